"""Hot reload: edits on disk are picked up; a broken edit never takes the others down."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bot.kb.watcher import ReloadingKb

ARTICLE = """---
id: {id}
title: {title}
summary: {title}.
tags: [test]
category: printer
audience: employee
updated: 2025-06-01
---

Body about {title}.
"""


def write(root: Path, article_id: str, title: str) -> None:
    (root / f"{article_id}.md").write_text(ARTICLE.format(id=article_id, title=title), encoding="utf-8")


def test_changes_are_swapped_in_without_restart(tmp_path: Path) -> None:
    write(tmp_path, "toner-low", "Replace the toner cartridge")
    kb = ReloadingKb(tmp_path, interval=0)
    assert kb.article_ids() == {"toner-low"}
    assert kb.check_now() is False

    write(tmp_path, "paper-jam", "Clear a paper jam in the copier")
    assert kb.check_now() is True
    assert kb.search("paper jam copier").hits[0].article_id == "paper-jam"

    (tmp_path / "broken.md").write_text("---\ntitle: [unclosed\n---\n", encoding="utf-8")
    assert kb.check_now() is True
    assert kb.article_ids() == {"toner-low", "paper-jam"}
    assert any(p.path.name == "broken.md" for p in kb.index.problems)

    (tmp_path / "toner-low.md").unlink()
    kb.check_now()
    assert kb.article_ids() == {"paper-jam"}


def test_background_thread_reloads(tmp_path: Path) -> None:
    write(tmp_path, "one", "First article")
    kb = ReloadingKb(tmp_path, interval=0.05)
    kb.start()
    try:
        old = kb.index
        write(tmp_path, "two", "Second article about scanners")
        # mtime granularity can be coarse; make the change visible regardless
        os.utime(tmp_path / "two.md", (time.time() + 5, time.time() + 5))
        deadline = time.monotonic() + 10
        while kb.index is old and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "two" in kb.article_ids()
    finally:
        kb.close()
