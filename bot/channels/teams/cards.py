"""Replies as Adaptive Cards (templates in bot/render/templates/teams/).

`Reply.text` arrives rendered and escaped for Teams markdown; the card templates place it in
TextBlocks and add the buttons and form inputs, every value through `tojson`. Which card:

- `reply.rich["teams"]`: an Adaptive Card another part of the bot built itself, used as is;
- a form: inputs + one submit;
- a live card (ticket in the queue, outage notice: buttons `ticket:...`/`outage:...`, or a
  template named `ticket_*`/`outage_*`): `Action.Execute` with an `Action.Submit` fallback, and a
  `refresh` action, because these are edited in place and must look the same to everyone;
- an article (`kb_article`): heading and body;
- anything else: text and `Action.Submit` buttons.
"""

from __future__ import annotations

import json
import re
from typing import Any

from bot.core.models import SECRET_PREVIEW, Button, Reply
from bot.render.renderer import Renderer

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
LIVE_PREFIXES = ("ticket:", "outage:")
LIVE_TEMPLATES = ("ticket", "outage", "queue")
_STYLES = {"primary": "positive", "danger": "destructive"}
_UNESCAPE = re.compile(r"\\([\\`*_\[\]<>#|~])")
_MARKS = re.compile(r"[*_`]")


def plain_text(text: str, limit: int = 240) -> str:
    """Notification preview / fallback text: the markdown marks and escapes taken out."""
    cleaned = _MARKS.sub("", _UNESCAPE.sub(lambda m: "\u0000" + m.group(1), text)).replace("\u0000", "")
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def paragraphs(text: str) -> list[str]:
    parts = [p.strip("\n") for p in re.split(r"\n\s*\n", text or "")]
    return [p for p in parts if p.strip()] or [" "]


def is_live(reply: Reply) -> bool:
    if any(b.value.startswith(LIVE_PREFIXES) for b in reply.buttons):
        return True
    template = reply.template or ""
    return any(template.startswith(prefix) for prefix in LIVE_TEMPLATES)


def _button(button: Button) -> dict[str, Any]:
    return {"label": button.label, "value": button.value, "style": _STYLES.get(button.style or "")}


def render_card(renderer: Renderer, reply: Reply, *, refresh_user_ids: tuple[str, ...] = ()) -> dict[str, Any]:
    rich = reply.rich.get("teams") if reply.rich else None
    if isinstance(rich, dict) and rich.get("type") == "AdaptiveCard":
        return dict(rich)
    if reply.secret:
        return _secret_card(renderer, reply)
    context: dict[str, Any] = {
        "paragraphs": paragraphs(reply.text),
        "buttons": [_button(b) for b in reply.buttons],
        "fallback_text": plain_text(reply.text, 1000),
    }
    if reply.form is not None:
        form = reply.form
        context["form"] = {
            "form_id": form.form_id, "title": form.title, "submit_label": form.submit_label,
            "fields": [{"name": f.name, "label": f.label, "kind": f.kind, "required": f.required,
                        "placeholder": f.placeholder, "pattern": f.pattern,
                        "options": [{"label": o.label, "value": o.value} for o in f.options]}
                       for f in form.fields],
        }
        name = "teams/card_form.json.j2"
    elif is_live(reply):
        resolved = "resolved" in (reply.template or "") or not reply.buttons
        context["container_style"] = "good" if resolved else "attention" if "outage" in (reply.template or "") \
            else "emphasis"
        context["refresh_user_ids"] = list(refresh_user_ids)
        name = "teams/card_ticket.json.j2"
    elif reply.template == "kb_article":
        name = "teams/card_article.json.j2"
    else:
        name = "teams/card_message.json.j2"
    card: dict[str, Any] = json.loads(renderer.raw(name, context))
    return card


def _secret_card(renderer: Renderer, reply: Reply) -> dict[str, Any]:
    parts = reply.rich.get("secret") if reply.rich else None
    if not isinstance(parts, dict) or "value" not in parts:
        # No parts to show exactly: say nothing of it rather than show it altered.
        parts = {"label": "A private message", "value": "", "advice": "Ask me again to see it."}
    from bot.core.text import escape_teams

    label = escape_teams(str(parts.get("label") or "Your temporary password")) + ":"
    advice = escape_teams(("Only you can see this message. It is shown once and not stored anywhere. "
                           + str(parts.get("advice") or "")).strip())
    card: dict[str, Any] = json.loads(renderer.raw("teams/card_secret.json.j2", {
        "label": label, "value": str(parts["value"]), "advice": advice, "fallback_text": SECRET_PREVIEW}))
    return card


def message_activity(renderer: Renderer, reply: Reply) -> dict[str, Any]:
    """The activity body the connector receives for a reply (POST or PUT). A secret never goes in
    the `summary` (the notification preview)."""
    card = render_card(renderer, reply)
    return {
        "type": "message",
        "summary": SECRET_PREVIEW if reply.secret else plain_text(reply.text),
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "content": card}],
    }
