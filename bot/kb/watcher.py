"""Hot reload: pick up article changes on disk without a restart and without blocking replies.

`ReloadingKb` serves searches from an immutable `KbIndex` snapshot. A daemon thread looks at the
folder's file list and modification times every `interval` seconds; when something changed it
builds a new index on that thread and swaps the reference (a single assignment, atomic under the
GIL). Searches running meanwhile finish on the old snapshot; none ever waits for a rebuild.
A rebuild that fails keeps the old snapshot and logs why.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bot.core.ports import KbResult
from bot.kb.loader import ARTICLE_SUFFIXES, LoadProblem
from bot.kb.search import KbIndex, SearchTuning

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(root: Path) -> Fingerprint:
    """(path, mtime, size) of every article file: changes when a file is added, removed or edited."""
    found: list[tuple[str, int, int]] = []
    if not root.is_dir():
        return ()
    for path in root.rglob("*"):
        if path.suffix.lower() in ARTICLE_SUFFIXES:
            try:
                stat = path.stat()
            except OSError:
                continue
            found.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(found))


class ReloadingKb:
    """A `KnowledgeBase` over a folder that follows edits. Call `start()` to watch, `close()` to stop."""

    def __init__(
        self,
        root: Path,
        *,
        interval: float = 5.0,
        tuning: SearchTuning | None = None,
        on_reload: Callable[[KbIndex], None] | None = None,
    ) -> None:
        self.root = Path(root)
        self.interval = interval
        self._tuning = tuning
        self._on_reload = on_reload
        self._fingerprint = fingerprint(self.root)
        self._index = KbIndex.from_dir(self.root, tuning=tuning)
        self._log_problems(self._index.problems)
        self._stop = threading.Event()
        self._rebuild_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.generation = 0

    # ----- KnowledgeBase ---------------------------------------------------------------------

    @property
    def index(self) -> KbIndex:
        return self._index

    def search(self, query: str, limit: int = 3, category: str | None = None) -> KbResult:
        return self._index.search(query, limit=limit, category=category)

    def article_ids(self) -> frozenset[str]:
        return self._index.article_ids()

    def render_article(self, article_id: str, max_chars: int | None = None) -> Mapping[str, Any] | None:
        return self._index.render_article(article_id, max_chars=max_chars)

    # ----- watching --------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None or self.interval <= 0:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="kb-reload", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(self.interval, 1.0) + 5)
            self._thread = None

    def check_now(self) -> bool:
        """Rebuild if the folder changed since the last build. True if a new index was swapped in.
        Runs on the caller's thread; the watcher thread calls it on its schedule."""
        with self._rebuild_lock:
            current = fingerprint(self.root)
            if current == self._fingerprint:
                return False
            try:
                fresh = KbIndex.from_dir(self.root, tuning=self._tuning)
            except Exception:  # a bad edit must never take the bot's knowledge base down
                log.exception("kb reload failed; keeping the previous %d articles", len(self._index.articles))
                self._fingerprint = current
                return False
            self._fingerprint = current
            self._index = fresh
            self.generation += 1
        log.info("kb reloaded: %d articles, %d problems", len(fresh.articles), len(fresh.problems))
        self._log_problems(fresh.problems)
        if self._on_reload is not None:
            self._on_reload(fresh)
        return True

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check_now()
            except Exception:
                log.exception("kb watcher check failed")

    @staticmethod
    def _log_problems(problems: tuple[LoadProblem, ...]) -> None:
        for problem in problems:
            if problem.severity == "error":
                log.warning("kb article skipped: %s", problem)
