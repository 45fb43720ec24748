"""Knowledge-base articles: Markdown files with YAML front matter, read leniently.

Our own articles (`kb_articles/`) carry `id`, `title`, `summary`, `tags`, `category`, `audience`,
`updated` and optionally `synonyms`, `flows` and `related`. Foreign corpora use other keys
(`description` for the summary, `ms.date` for the date, `keywords` for tags) or no front matter at
all; they load too: a missing id comes from the file's path, a missing title from the first heading
or the file name.

A broken article (unreadable, empty, front matter that is not YAML) is skipped and reported with
its file and line; it never stops the others from loading, and never stops the bot.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import yaml

from bot.kb.text import markdown_to_plain

# The triage labels (DESIGN.md) an article's `category` may name.
CATEGORIES = frozenset(
    {
        "password_reset",
        "account_locked",
        "mfa",
        "vpn",
        "network",
        "printer",
        "email",
        "software_request",
        "access_request",
        "hardware",
        "computer_problem",
        "meetings",
        "phone",
        "onboarding",
        "security",
        "ticket_status",
        "outage_check",
        "human",
        "smalltalk",
        "out_of_scope",
    }
)
AUDIENCES = frozenset({"employee", "technician"})
REQUIRED_FIELDS = ("id", "title", "summary", "tags", "category", "audience", "updated")
ARTICLE_SUFFIXES = (".md", ".markdown", ".txt")  # plain-text FAQ pages load too
# Past this size an article is indexed only in part: nobody reads a 1 MB answer in chat, and one
# pasted log file must not slow every search.
MAX_ARTICLE_BYTES = 512 * 1024

_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_HEADING = re.compile(r"^\s{0,3}#\s+(.+?)\s*#*\s*$", re.MULTILINE)
_FOREIGN_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")

Severity = Literal["error", "warning"]
# The C parser when PyYAML was built with libyaml: ten times faster on a large corpus.
_YamlLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class LoadProblem:
    """Something wrong with an article file. `error`: the article was skipped; `warning`: loaded."""

    path: Path
    line: int
    severity: Severity
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.severity}: {self.message}"


@dataclass(frozen=True, slots=True)
class Article:
    id: str
    title: str
    summary: str
    body: str  # Markdown, front matter removed
    tags: tuple[str, ...] = ()
    category: str | None = None
    audience: str = "employee"
    updated: date | None = None
    synonyms: tuple[str, ...] = ()
    flows: tuple[str, ...] = ()
    related: tuple[str, ...] = ()
    url: str | None = None
    path: Path | None = None
    # Line of the file where the body starts, so problems found in the body can name their line.
    body_line: int = 1
    related_line: int = 1

    @property
    def plain_body(self) -> str:
        return markdown_to_plain(self.body)


@dataclass(frozen=True, slots=True)
class LoadResult:
    articles: tuple[Article, ...]
    problems: tuple[LoadProblem, ...] = field(default_factory=tuple)

    @property
    def errors(self) -> tuple[LoadProblem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")


def article_files(root: Path) -> Iterator[Path]:
    """Article files under `root`, sorted, skipping hidden and `_`-prefixed files and folders
    (drafts, templates, README-style notes that are not articles)."""
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith((".", "_")) for part in rel.parts):
            continue
        if path.suffix.lower() in ARTICLE_SUFFIXES and path.is_file():
            if rel.name.lower() == "readme.md" and len(rel.parts) == 1:
                continue
            yield path


def load_dir(root: Path, *, max_bytes: int = MAX_ARTICLE_BYTES) -> LoadResult:
    """Every article under `root`. Never raises for a bad file; a missing folder is one problem."""
    root = Path(root)
    if not root.is_dir():
        return LoadResult((), (LoadProblem(root, 0, "error", "knowledge-base folder not found"),))
    articles: list[Article] = []
    problems: list[LoadProblem] = []
    seen: dict[str, Path] = {}
    for path in article_files(root):
        article, found = load_file(path, root, max_bytes=max_bytes)
        problems.extend(found)
        if article is None:
            continue
        if article.id in seen:
            problems.append(
                LoadProblem(
                    path, 1, "error", f"duplicate id {article.id!r} (also in {seen[article.id]}); skipped"
                )
            )
            continue
        seen[article.id] = path
        articles.append(article)
    known = set(seen)
    for article in articles:
        for other in article.related:
            if other not in known and article.path is not None:
                problems.append(
                    LoadProblem(article.path, 1, "warning", f"related article {other!r} not found")
                )
    return LoadResult(tuple(articles), tuple(problems))


def load_file(
    path: Path, root: Path, *, max_bytes: int = MAX_ARTICLE_BYTES
) -> tuple[Article | None, list[LoadProblem]]:
    problems: list[LoadProblem] = []
    try:
        with path.open("rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        return None, [LoadProblem(path, 0, "error", f"cannot read: {exc.strerror or exc}")]
    if len(raw) > max_bytes:
        raw = raw[: raw.rfind(b"\n", 0, max_bytes) + 1 or max_bytes]
        problems.append(
            LoadProblem(
                path, 1, "warning", f"larger than {max_bytes // 1024} KiB; only the beginning is used"
            )
        )
    text = _decode(raw, path, problems)
    article = parse_article(text, path=path, root=root, problems=problems)
    return article, problems


def _decode(raw: bytes, path: Path, problems: list[LoadProblem]) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        problems.append(
            LoadProblem(
                path, line, "warning", f"not valid UTF-8 (byte 0x{raw[exc.start]:02x}); read as Windows-1252"
            )
        )
    try:
        return raw.decode("cp1252")
    except UnicodeDecodeError:
        # cp1252 leaves five bytes undefined; Latin-1 maps every byte, so this cannot fail.
        return raw.decode("latin-1")


def split_front_matter(text: str) -> tuple[str | None, str, int]:
    """(front matter or None, body, line where the body starts). Raises ValueError if unterminated."""
    lines = text.splitlines(keepends=True)
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    if start >= len(lines) or lines[start].rstrip() != "---":
        return None, text, 1
    for end in range(start + 1, len(lines)):
        if lines[end].rstrip() in ("---", "..."):
            return "".join(lines[start + 1 : end]), "".join(lines[end + 1 :]), end + 2
    raise ValueError(start + 1)


def parse_article(
    text: str, *, path: Path, root: Path | None = None, problems: list[LoadProblem] | None = None
) -> Article | None:
    """One article from the text of its file, or None (with an error in `problems`) if unusable."""
    problems = problems if problems is not None else []

    def report(line: int, severity: Severity, message: str) -> None:
        problems.append(LoadProblem(path, line, severity, message))

    if not text.strip():
        report(1, "error", "empty file; skipped")
        return None
    try:
        front_text, body, body_line = split_front_matter(text)
    except ValueError as exc:
        report(int(exc.args[0]), "error", "front matter opened with '---' is never closed; skipped")
        return None

    meta: dict[str, Any] = {}
    fm_first_line = 1
    if front_text is not None and front_text.strip():
        fm_first_line = text[: text.find("---")].count("\n") + 2
        try:
            loaded = yaml.load(front_text, Loader=_YamlLoader)  # noqa: S506 - a safe loader
        except yaml.YAMLError as exc:
            # Where the broken construct starts (an unclosed "[") is more useful than where the
            # parser gave up (often the end of the front matter).
            mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
            line = fm_first_line + (mark.line if mark is not None else 0)
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            report(line, "error", f"front matter is not valid YAML: {problem}; skipped")
            return None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            report(
                fm_first_line,
                "error",
                "front matter must be a mapping of keys (title: ..., summary: ...); skipped",
            )
            return None
        meta = {str(k): v for k, v in loaded.items()}

    def line_of(key: str) -> int:
        # Only asked for when reporting a problem, so the front matter is not parsed twice per file.
        if front_text is None:
            return 1
        pattern = re.compile(rf"^{re.escape(key)}\s*:", re.MULTILINE)
        match = pattern.search(front_text)
        return fm_first_line + front_text.count("\n", 0, match.start()) if match else fm_first_line

    def text_field(*keys: str) -> str | None:
        for key in keys:
            value = meta.get(key)
            if value is None:
                continue
            if isinstance(value, str | int | float | date):
                cleaned = " ".join(str(value).split())
                if cleaned:
                    return cleaned
            else:
                report(line_of(key), "warning", f"`{key}` should be text, got {type(value).__name__}")
        return None

    def list_field(*keys: str) -> tuple[str, ...]:
        for key in keys:
            value = meta.get(key)
            if value is None:
                continue
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
                return tuple(str(v).strip() for v in value if str(v).strip())
            report(line_of(key), "warning", f"`{key}` should be a list of text")
        return ()

    rel = path.relative_to(root) if root is not None and path.is_relative_to(root) else Path(path.name)
    derived_id = rel.with_suffix("").as_posix()
    article_id = text_field("id")
    if article_id is None:
        article_id = derived_id
    elif not _SLUG.match(article_id):
        report(
            line_of("id"), "warning", f"id {article_id!r} should be a kebab-case slug (like vpn-wont-connect)"
        )

    title = text_field("title")
    if title is None:
        heading = _HEADING.search(body)
        title = markdown_to_plain(heading.group(1)).strip() if heading else ""
        if not title:
            # A page without a heading whose first line is a question (a FAQ page), or a plain-text
            # page: that first line is its title.
            first = next((line.strip() for line in body.splitlines() if line.strip()), "")
            if first and len(first) <= 200 and (first.endswith("?") or path.suffix.lower() == ".txt"):
                title = markdown_to_plain(first).strip()
    if not title:
        title = rel.stem.replace("-", " ").replace("_", " ").strip().capitalize() or article_id

    summary = text_field("summary", "description") or _first_paragraph(body)
    if not body.strip() and not summary:
        report(body_line, "warning", "article has no body and no summary")

    category = text_field("category")
    if category is not None and category not in CATEGORIES:
        report(
            line_of("category"),
            "warning",
            f"category {category!r} is not a triage label ({', '.join(sorted(CATEGORIES))})",
        )
    audience = text_field("audience") or "employee"
    if audience.lower() not in AUDIENCES:
        if "audience" in meta and "id" in meta:
            report(line_of("audience"), "warning", f"audience {audience!r} should be employee or technician")
        audience = "technician" if audience.lower() in {"itpro", "admin", "developer"} else "employee"

    updated = _parse_date(meta.get("updated", meta.get("ms.date")))
    raw_updated = meta.get("updated")
    if raw_updated is not None and _parse_date(raw_updated) is None:
        report(line_of("updated"), "warning", f"updated {raw_updated!r} is not a date (YYYY-MM-DD)")

    for key in REQUIRED_FIELDS:
        if key not in meta and not (key == "summary" and "description" in meta):
            report(
                fm_first_line if front_text is not None else 1, "warning", f"missing `{key}` in front matter"
            )

    return Article(
        id=article_id,
        title=title,
        summary=summary,
        body=body,
        tags=list_field("tags", "keywords"),
        category=category,
        audience=audience.lower(),
        updated=updated,
        synonyms=list_field("synonyms"),
        flows=list_field("flows", "related_flows"),
        related=list_field("related"),
        url=text_field("url"),
        path=path,
        body_line=body_line,
        related_line=line_of("related") if "related" in meta else 1,
    )


def _first_paragraph(body: str, limit: int = 240) -> str:
    """The first paragraph of prose (not a heading, list or code), as a stand-in summary."""
    in_code = False
    for block in re.split(r"\n\s*\n", body):
        stripped = block.strip()
        if stripped.startswith("```"):
            in_code = not in_code if stripped.count("```") == 1 else in_code
            continue
        if in_code or not stripped or stripped.startswith(("#", "|", "<!--", ":::", "[!INCLUDE")):
            continue
        plain = " ".join(markdown_to_plain(stripped).split())
        if len(plain) < 20:
            continue
        if len(plain) > limit:
            plain = plain[:limit].rsplit(" ", 1)[0] + "…"
        return plain
    return ""


def _parse_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        match = _FOREIGN_DATE.match(text)
        try:
            if match:
                month, day, year = (int(g) for g in match.groups())
                return date(year, month, day)
            return date.fromisoformat(text[:10])
        except ValueError:
            return None
    return None
