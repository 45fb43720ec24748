"""One Jinja2 environment for every text the bot shows.

`StrictUndefined`, so a missing variable fails loudly in tests instead of printing nothing.
Every `{{ value }}` is escaped for where it lands (the `finalize` hook of a per-platform overlay):
Slack mrkdwn escapes `&`, `<`, `>` so `<!channel>` typed by a person cannot ping a channel; Teams
markdown escapes its control characters; the console prints text as it is. Text that is already
formatted for the platform is wrapped in `Markup` and left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, pass_context
from jinja2.runtime import Context
from markupsafe import Markup

from bot.core.models import Platform

# The escapers live in bot/core/text.py (the pipeline and kb rendering use them too); re-exported here.
from bot.core.text import ESCAPERS, neutralise
from bot.core.text import escape_mrkdwn as escape_mrkdwn
from bot.core.text import escape_teams as escape_teams

TEMPLATES = Path(__file__).resolve().parent / "templates"


def _finalizer(escape: Callable[[str], str]) -> Callable[[Any], Any]:
    def finalize(value: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, Markup):
            return str(value)
        # Escaped once, for where it lands; invisible and bidi controls typed by a person shown.
        return escape(neutralise(str(value)))

    return finalize


def _platform(ctx: Context) -> Platform:
    value = ctx.get("platform")
    return value if isinstance(value, Platform) else Platform.CONSOLE


@pass_context
def _bold(ctx: Context, value: Any) -> Markup:
    platform = _platform(ctx)
    text = ESCAPERS[platform](neutralise(str(value)))
    if platform is Platform.SLACK:
        return Markup(f"*{text}*")  # noqa: S704 - escaped just above
    if platform is Platform.TEAMS:
        return Markup(f"**{text}**")  # noqa: S704
    return Markup(text)  # noqa: S704


@pass_context
def _article_body(ctx: Context, article: Mapping[str, Any], max_chars: int = 2500) -> Markup:
    """A knowledge-base article (the dict of `KbIndex.render_article`) below its title and summary,
    in the channel's own formatting: Slack mrkdwn (escaped there), Teams card markdown, plain text."""
    from bot.kb.render import PLAIN, SLACK, TEAMS, article_to_text

    style = {Platform.SLACK: SLACK, Platform.TEAMS: TEAMS}.get(_platform(ctx), PLAIN)
    return Markup(article_to_text(article, max_chars, style=style, head=False))  # noqa: S704 - escaped per style


@pass_context
def _code(ctx: Context, value: Any) -> Markup:
    if _platform(ctx) is Platform.CONSOLE:
        return Markup(str(value))  # noqa: S704 - plain text: shown exactly as it is
    text = str(value).replace("`", "'")
    return Markup(f"`{ESCAPERS[_platform(ctx)](text) if _platform(ctx) is Platform.SLACK else text}`")  # noqa: S704


class Renderer:
    """Renders named templates and inline flow text for a platform."""

    def __init__(self, directory: Path = TEMPLATES) -> None:
        self.directory = directory
        self.env = Environment(
            loader=FileSystemLoader(str(directory)),
            undefined=StrictUndefined,
            autoescape=False,  # noqa: S701
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["bold"] = _bold
        self.env.filters["code"] = _code
        self.env.filters["article_body"] = _article_body
        self._overlays = {p: self.env.overlay(finalize=_finalizer(esc)) for p, esc in ESCAPERS.items()}

    def template_names(self) -> frozenset[str]:
        """Names flows may use in `template:` (files in templates/common, without `.j2`)."""
        return frozenset(p.stem for p in (self.directory / "common").glob("*.j2"))

    def _named(self, platform: Platform, name: str) -> Template:
        env = self._overlays[platform]
        candidate = f"{platform.value}/{name}.j2"
        if (self.directory / candidate).exists():
            return env.get_template(candidate)
        return env.get_template(f"common/{name}.j2")

    @lru_cache(maxsize=2048)  # noqa: B019 - one renderer lives as long as the app
    def _inline(self, platform: Platform, source: str) -> Template:
        return self._overlays[platform].from_string(source)

    def text(self, platform: Platform, *, template: str | None = None, source: str | None = None,
             context: Mapping[str, Any] | None = None) -> str:
        values = dict(context or {})
        values["platform"] = platform
        compiled = self._inline(platform, source) if source else self._named(platform, template or "")
        return compiled.render(values).strip()

    def raw(self, name: str, context: Mapping[str, Any]) -> str:
        """A platform payload template (Block Kit / Adaptive Card JSON), rendered without escaping
        beyond what the template itself applies (use the `tojson` filter for user text)."""
        return self.env.get_template(name).render(dict(context))
