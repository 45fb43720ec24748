"""An article's body as plain data for "Show me", and as readable text for plain channels.

`article_to_dict` turns Markdown into sections of typed blocks that each platform renderer formats
its own way: `paragraph` (text), `steps` (numbered items), `bullets` (items), `code` (code, language).
Text keeps a small inline Markdown subset: `**bold**`, `_italic_`, `` `code` `` and `[text](url)`,
so links survive until a renderer turns them into its own link syntax.

Long articles are cut at a block boundary (between list items at worst), never mid-word, and say
so with `truncated`, so the renderer can link to the rest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

from bot.core.text import escape_mrkdwn
from bot.kb.loader import Article

DEFAULT_MAX_CHARS = 3000

_md = MarkdownIt("commonmark").enable("table")
_INCLUDE_LINE = re.compile(r"^\s*\[!INCLUDE[^\n]*$", re.IGNORECASE | re.MULTILINE)
_INLINE_DIRECTIVE = re.compile(r":::[^\n]*?:::")
_DIRECTIVE_LINE = re.compile(r"^\s*:::[^\n]*$", re.MULTILINE)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_CALLOUT = re.compile(r"\[!(NOTE|TIP|IMPORTANT|WARNING|CAUTION)\]", re.IGNORECASE)
_TAG = re.compile(r"<[^>]{1,300}>")
_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")

Block = dict[str, Any]
Section = dict[str, Any]


def article_to_dict(article: Article, max_chars: int | None = DEFAULT_MAX_CHARS) -> dict[str, Any]:
    """{"id", "title", "summary", "url", "sections": [{"heading", "blocks": [...]}], "truncated"}."""
    sections = markdown_sections(article.body, skip_heading=article.title)
    truncated = False
    if max_chars is not None:
        budget = max(max_chars - len(article.title) - len(article.summary), 200)
        sections, truncated = _cut(sections, budget)
    return {
        "id": article.id,
        "title": article.title,
        "summary": article.summary,
        "url": article.url,
        "sections": sections,
        "truncated": truncated,
    }


def markdown_sections(markdown: str, *, skip_heading: str | None = None) -> list[Section]:
    """Split Markdown into sections at headings; each holds typed blocks."""
    text = _COMMENT.sub("", markdown)
    text = _INCLUDE_LINE.sub("", text)
    text = _INLINE_DIRECTIVE.sub("", text)
    text = _DIRECTIVE_LINE.sub("", text)
    text = _CALLOUT.sub(lambda m: f"**{m.group(1).capitalize()}:**", text)
    tokens = _md.parse(text)
    sections: list[Section] = [{"heading": None, "blocks": []}]
    i = 0
    while i < len(tokens):
        token = tokens[i]
        blocks: list[Block] = sections[-1]["blocks"]
        if token.type == "heading_open":
            heading = _inline(tokens[i + 1])
            i += 3
            if skip_heading is not None and token.tag == "h1" and _same(heading, skip_heading):
                continue
            if not sections[-1]["blocks"] and sections[-1]["heading"] is None:
                sections[-1]["heading"] = heading
            else:
                sections.append({"heading": heading, "blocks": []})
            continue
        if token.type in ("ordered_list_open", "bullet_list_open"):
            end = _closing(tokens, i)
            items = _list_items(tokens[i + 1 : end], depth=0)
            if items:
                blocks.append(
                    {"type": "steps" if token.type == "ordered_list_open" else "bullets", "items": items}
                )
            i = end + 1
            continue
        if token.type in ("fence", "code_block"):
            code = token.content.rstrip("\n")
            if code.strip():
                blocks.append({"type": "code", "code": code, "language": token.info.strip() or None})
            i += 1
            continue
        if token.type == "table_open":
            end = _closing(tokens, i)
            rows = _table_rows(tokens[i:end])
            if rows:
                blocks.append({"type": "bullets", "items": rows})
            i = end + 1
            continue
        if token.type == "inline":
            paragraph = _inline(token)
            if paragraph:
                blocks.append({"type": "paragraph", "text": paragraph})
        elif token.type == "html_block":
            paragraph = " ".join(_TAG.sub(" ", token.content).split())
            if paragraph:
                blocks.append({"type": "paragraph", "text": paragraph})
        i += 1
    return [s for s in sections if s["blocks"] or s["heading"]]


def _same(a: str, b: str) -> bool:
    def squash(s: str) -> str:
        return re.sub(r"\W+", "", s).casefold()

    return squash(a) == squash(b)


def _closing(tokens: Sequence[Token], start: int) -> int:
    """Index of the token closing the one at `start` (same nesting level)."""
    level = 0
    for j in range(start, len(tokens)):
        level += tokens[j].nesting
        if level == 0:
            return j
    return len(tokens) - 1


def _list_items(tokens: Sequence[Token], depth: int) -> list[str]:
    """Items of one list; nested lists become indented lines inside their parent item."""
    items: list[str] = []
    i = 0
    while i < len(tokens):
        if tokens[i].type != "list_item_open":
            i += 1
            continue
        end = _closing(tokens, i)
        parts: list[str] = []
        j = i + 1
        while j < end:
            token = tokens[j]
            if token.type in ("ordered_list_open", "bullet_list_open"):
                sub_end = _closing(tokens, j)
                ordered = token.type == "ordered_list_open"
                for n, sub in enumerate(_list_items(tokens[j + 1 : sub_end], depth + 1), start=1):
                    marker = f"{n}." if ordered else "-"
                    parts.append("\n" + "   " * (depth + 1) + f"{marker} {sub}")
                j = sub_end + 1
                continue
            if token.type == "inline":
                text = _inline(token)
                if text:
                    parts.append((" " if parts else "") + text)
            elif token.type in ("fence", "code_block"):
                code = token.content.rstrip("\n")
                if "\n" in code:
                    parts.append(f"\n```\n{code}\n```")
                elif code:
                    parts.append(f" `{code}`")
            j += 1
        item = "".join(parts).strip()
        if item:
            items.append(item)
        i = end + 1
    return items


def _table_rows(tokens: Sequence[Token]) -> list[str]:
    rows: list[str] = []
    cells: list[str] = []
    for token in tokens:
        if token.type == "tr_open":
            cells = []
        elif token.type == "inline":
            cells.append(_inline(token))
        elif token.type == "tr_close" and any(cells):
            rows.append(" | ".join(cells))
    return rows


def _inline(token: Token) -> str:
    """Inline Markdown subset of one inline token: bold, italic, code and links survive."""
    out: list[str] = []
    link_stack: list[str | None] = []
    opened: list[int] = []  # where each open bold span starts in `out`
    for child in token.children or []:
        kind = child.type
        if kind == "text":
            out.append(child.content)
        elif kind == "code_inline":
            out.append(f"`{child.content}`")
        elif kind == "strong_open":
            opened.append(len(out))
            out.append("**")
        elif kind == "strong_close":
            start = opened.pop() if opened else None
            if start is not None and not "".join(out[start + 1:]).strip():
                # An empty bold span is dropped; its neighbours (even another bold span) are not touched.
                del out[start:]
            else:
                out.append("**")
        elif kind in ("em_open", "em_close"):
            out.append("_")
        elif kind in ("softbreak", "hardbreak"):
            out.append(" ")
        elif kind == "link_open":
            href = str(child.attrs.get("href") or "")
            link_stack.append(href or None)
            out.append("[" if href else "")
        elif kind == "link_close":
            target = link_stack.pop() if link_stack else None
            out.append(f"]({target})" if target else "")
        elif kind == "image":
            alt = child.content or "image"
            out.append(f"[{alt}]")
        elif kind == "html_inline":
            continue
    text = "".join(out)
    return " ".join(text.split())


def _block_chars(block: Block) -> int:
    if block["type"] in ("steps", "bullets"):
        return sum(len(item) + 4 for item in block["items"])
    if block["type"] == "code":
        return len(block["code"]) + 8
    return len(block["text"]) + 2


def _cut(sections: list[Section], budget: int) -> tuple[list[Section], bool]:
    """Sections that fit in `budget` characters, cut at a block or list-item boundary."""
    kept: list[Section] = []
    used = 0
    for section in sections:
        heading_cost = len(section["heading"] or "") + 2
        if used + heading_cost > budget:
            return kept, True
        blocks: list[Block] = []
        used += heading_cost
        for block in section["blocks"]:
            cost = _block_chars(block)
            if used + cost <= budget:
                blocks.append(block)
                used += cost
                continue
            partial = _partial_block(block, budget - used)
            if partial is not None:
                blocks.append(partial)
            if blocks:
                kept.append({"heading": section["heading"], "blocks": blocks})
            return kept, True
        kept.append({"heading": section["heading"], "blocks": blocks})
    return kept, False


def _partial_block(block: Block, room: int) -> Block | None:
    """As much of a block as fits in `room`: whole list items, or whole sentences of a paragraph."""
    if room < 80:
        return None
    if block["type"] in ("steps", "bullets"):
        items: list[str] = []
        for item in block["items"]:
            if sum(len(i) + 4 for i in items) + len(item) + 4 > room:
                break
            items.append(item)
        return {**block, "items": items} if items else None
    if block["type"] == "paragraph":
        sentences = re.split(r"(?<=[.!?])\s+", block["text"])
        text = ""
        for sentence in sentences:
            if len(text) + len(sentence) + 1 > room:
                break
            text = f"{text} {sentence}".strip()
        return {"type": "paragraph", "text": text} if text else None
    return None


# ----- plain text ---------------------------------------------------------------------------------


def links_as_text(text: str) -> str:
    """`[text](url)` -> `text (url)`; a link whose text is its address stays one address."""

    def plain(match: re.Match[str]) -> str:
        label, url = match.group(1).strip(), match.group(2)
        return url if not label or label == url else f"{label} ({url})"

    return _LINK.sub(plain, text)


@dataclass(frozen=True, slots=True)
class ArticleStyle:
    """How one channel writes an article: inline text, headings, list items and code."""

    inline: Callable[[str], str]
    heading: Callable[[str], str]
    bullet: str
    code: Callable[[str, str], str]


def _plain_code(code: str, language: str) -> str:
    return f"```{language}\n{code}\n```"


# Plain text / Markdown: links as `text (url)`, headings as `## `, fenced code (console, logs).
PLAIN = ArticleStyle(inline=links_as_text, heading=lambda text: f"## {links_as_text(text)}", bullet="-",
                     code=_plain_code)

_BOLD = re.compile(r"\*\*(.+?)\*\*")


def _slack_inline(text: str) -> str:
    """Slack mrkdwn: `&`, `<`, `>` escaped first, then `**b**` -> `*b*` and `[t](u)` -> `<u|t>`."""
    text = escape_mrkdwn(text)
    text = _BOLD.sub(r"*\1*", text)
    return _LINK.sub(lambda m: f"<{m.group(2)}|{m.group(1).replace('|', '/')}>" if m.group(1) else f"<{m.group(2)}>",
                     text)


def _slack_code(code: str, language: str) -> str:
    del language
    return "```\n" + escape_mrkdwn(code) + "\n```"


SLACK = ArticleStyle(inline=_slack_inline, heading=lambda text: f"*{_slack_inline(text).replace('*', '')}*",
                     bullet="•", code=_slack_code)

_CODE_SPAN = re.compile(r"`([^`]*)`")


def _teams_inline(text: str) -> str:
    """Adaptive Card TextBlock markdown knows bold, italic, lists and links, not code: the text of a
    code span stays, its backticks go. Articles are written by the help desk, so their Markdown is
    kept rather than escaped (titles and anything a person typed are still escaped)."""
    return _CODE_SPAN.sub(r"\1", text)


def _teams_code(code: str, language: str) -> str:
    del language
    return code


TEAMS = ArticleStyle(inline=_teams_inline, heading=lambda text: f"**{_teams_inline(text).replace('**', '')}**",
                     bullet="-", code=_teams_code)


def article_to_text(
    article: Article | Mapping[str, Any],
    max_chars: int = DEFAULT_MAX_CHARS,
    *,
    style: ArticleStyle = PLAIN,
    head: bool = True,
) -> str:
    """A readable version in a channel's style (plain Markdown by default): numbered steps, code,
    links kept, cut at a section or paragraph boundary with a pointer to the full article.
    `head=False` leaves out the title and summary, for a template that shows them itself."""
    data: Mapping[str, Any] = (
        article_to_dict(article, max_chars=None) if isinstance(article, Article) else article
    )
    where = data.get("url") or data.get("id")
    tail = style.inline(f"(continued in the full article: {where})")
    chunks: list[str] = []
    if head:
        lines = [str(data["title"])]
        if data.get("summary"):
            lines.append(style.inline(str(data["summary"])))
        chunks.append("\n".join(lines))
    for section in data.get("sections", []):
        if section.get("heading"):
            chunks.append(style.heading(str(section["heading"])))
        for block in section.get("blocks", []):
            chunks.append(_block_text(block, style))
    truncated = bool(data.get("truncated"))
    out: list[str] = []
    used = 0
    room = max_chars - len(tail) - 2
    headings = {style.heading(str(s["heading"])) for s in data.get("sections", []) if s.get("heading")}
    for chunk in chunks:
        if used + len(chunk) + 2 > room and out:
            truncated = True
            break
        out.append(chunk)
        used += len(chunk) + 2
    # A heading with nothing under it is a dangling promise; drop it when cutting.
    while truncated and len(out) > 1 and out[-1] in headings:
        out.pop()
    if truncated:
        out.append(tail)
    return "\n\n".join(out)


def _block_text(block: Mapping[str, Any], style: ArticleStyle = PLAIN) -> str:
    kind = block.get("type")
    if kind == "steps":
        return "\n".join(f"{n}. {style.inline(item)}" for n, item in enumerate(block["items"], start=1))
    if kind == "bullets":
        return "\n".join(f"{style.bullet} {style.inline(item)}" for item in block["items"])
    if kind == "code":
        return style.code(str(block["code"]), str(block.get("language") or ""))
    return style.inline(str(block.get("text", "")))
