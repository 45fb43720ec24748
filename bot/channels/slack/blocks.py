"""Reply → Block Kit, through the Jinja templates in bot/render/templates/slack/.

`Reply.text` arrives rendered and escaped for Slack mrkdwn by the renderer; this module only lays
it out within Slack's limits: 3000 characters per section (longer text is split at paragraph or
line breaks, never inside an `&amp;` entity or a `<link|label>`), 50 blocks per message (100 in a
modal or the Home tab), five buttons per row, button labels of 75 characters and values of 2000.
A message longer than `MAX_MESSAGE_TEXT` is cut and gets a "Show the rest" button that opens the
remainder in a modal. A form becomes a "Fill in the form" button: a modal can only be opened
with the `trigger_id` of an interaction (valid 3 s), so the person's click opens it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from bot.core.models import SECRET_PREVIEW, Button, Form, FormField, Reply
from bot.core.text import escape_mrkdwn
from bot.render.renderer import Renderer

SECTION_TEXT = 3000
MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100
BUTTONS_PER_ROW = 5
BUTTON_LABEL = 75
BUTTON_VALUE = 2000
MAX_MESSAGE_TEXT = 9000
FALLBACK_TEXT = 3000
MODAL_TITLE = 24
OPTION_VALUE = 150
METADATA = 3000

# Button values this channel handles itself (they never reach the pipeline).
V_FORM = "slack:form:"
V_FORM_REF = "slack:form#"
V_MORE = "slack:more:"


def cut(text: str, limit: int) -> str:
    """The longest prefix within `limit` that does not split an entity or a `<...>` link."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    amp = head.rfind("&")
    if amp != -1 and ";" not in head[amp:]:
        head = head[:amp]
    lt = head.rfind("<")
    if lt != -1 and ">" not in head[lt:]:
        head = head[:lt]
    return head


def split_text(text: str, limit: int = SECTION_TEXT) -> list[str]:
    """Chunks of at most `limit` characters, broken at paragraphs, then lines, then words."""
    chunks: list[str] = []
    rest = text.strip()
    while rest:
        if len(rest) <= limit:
            chunks.append(rest)
            break
        window = cut(rest, limit)
        point = max(window.rfind("\n\n"), -1)
        if point < limit // 3:
            point = window.rfind("\n")
        if point < limit // 3:
            point = window.rfind(" ")
        if point < limit // 3:
            point = len(window)
        chunks.append(rest[:point].rstrip())
        rest = rest[point:].lstrip()
    return chunks


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class OverflowStore:
    """What did not fit in a message or a button value, kept in memory for a day (bounded).

    A lost entry (restart, another replica) only costs the person a "no longer available" note.
    """

    def __init__(self, capacity: int = 2000, ttl_seconds: float = 86400.0) -> None:
        self._items: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self.capacity = capacity
        self.ttl = ttl_seconds

    def put(self, value: str) -> str:
        key = uuid.uuid4().hex[:16]
        self._items[key] = (time.monotonic() + self.ttl, value)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return key

    def get(self, key: str) -> str | None:
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            return None
        return item[1]


def form_to_json(form: Form) -> dict[str, Any]:
    return {"i": form.form_id, "t": form.title, "s": form.submit_label,
            "f": [{"n": f.name, "l": f.label, "k": f.kind, "r": f.required, "p": f.pattern, "h": f.placeholder,
                   "o": [[o.label, o.value] for o in f.options]} for f in form.fields]}


def form_from_json(data: Mapping[str, Any]) -> Form:
    return Form(form_id=str(data["i"]), title=str(data["t"]), submit_label=str(data.get("s") or "Submit"),
                fields=tuple(FormField(name=f["n"], label=f["l"], kind=f.get("k", "text"), required=bool(f.get("r")),
                                       pattern=f.get("p"), placeholder=f.get("h"),
                                       options=tuple(Button(o[0], o[1]) for o in f.get("o", [])))
                             for f in data.get("f", [])))


class BlockKit:
    """Builds messages, modals and the Home tab from templates, within Slack's limits."""

    def __init__(self, renderer: Renderer, overflow: OverflowStore | None = None) -> None:
        self.renderer = renderer
        self.overflow = overflow or OverflowStore()

    def _render(self, name: str, context: Mapping[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.renderer.raw(f"slack/{name}", context))
        return data

    # -- pieces --

    def _rows(self, buttons: Sequence[Button], prefix: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        usable = []
        for button in buttons:
            if len(button.value) > BUTTON_VALUE:
                # Cannot be sent as is; keep the value here and send a reference.
                button = Button(button.label, f"slack:ref#{self.overflow.put(button.value)}", button.style)
            usable.append(button)
        for start in range(0, len(usable), BUTTONS_PER_ROW):
            row = usable[start:start + BUTTONS_PER_ROW]
            rows.append({"kind": "actions", "block_id": f"{prefix}{start // BUTTONS_PER_ROW}", "buttons": [
                {"action_id": f"{prefix}{start + n}", "label": _clip(b.label, BUTTON_LABEL), "value": b.value,
                 "style": b.style if b.style in ("primary", "danger") else None}
                for n, b in enumerate(row)
            ]})
        return rows

    def form_button(self, form: Form) -> Button:
        encoded = json.dumps(form_to_json(form), separators=(",", ":"))
        value = V_FORM + encoded
        if len(value) > BUTTON_VALUE:
            value = V_FORM_REF + self.overflow.put(encoded)
        return Button("Fill in the form", value, "primary")

    def resolve_ref(self, value: str) -> str | None:
        """The real value behind a `slack:ref#` button (too long to send), or None if forgotten."""
        if value.startswith("slack:ref#"):
            return self.overflow.get(value.removeprefix("slack:ref#"))
        return value

    def form_of(self, value: str) -> Form | None:
        if value.startswith(V_FORM):
            raw: str | None = value.removeprefix(V_FORM)
        elif value.startswith(V_FORM_REF):
            raw = self.overflow.get(value.removeprefix(V_FORM_REF))
        else:
            return None
        if raw is None:
            return None
        try:
            return form_from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError):
            return None

    # -- messages --

    def message(self, reply: Reply, *, max_blocks: int = MESSAGE_BLOCKS) -> dict[str, Any]:
        """`{"text": ..., "blocks": [...]}` for chat.postMessage / chat.update / chat.postEphemeral."""
        if "slack" in reply.rich and isinstance(reply.rich["slack"], Mapping):
            rich = dict(reply.rich["slack"])
            rich.setdefault("text", cut(reply.text, FALLBACK_TEXT))
            return rich
        if reply.secret:
            return self._secret(reply)
        text = reply.text.strip()
        rest = ""
        if len(text) > MAX_MESSAGE_TEXT:
            shown = split_text(cut(text, MAX_MESSAGE_TEXT), MAX_MESSAGE_TEXT)[0]
            rest = text[len(shown):].strip()
            text = shown
        buttons = list(reply.buttons)
        if reply.form is not None:
            buttons.insert(0, self.form_button(reply.form))
        rows = self._rows(buttons, "hd_")
        sections = split_text(text) if text else []
        room = max_blocks - len(rows) - (1 if rest or len(sections) > max_blocks - len(rows) else 0)
        if len(sections) > room:
            rest = ("\n\n".join(sections[room:]) + ("\n\n" + rest if rest else "")).strip()
            sections = sections[:room]
        items: list[dict[str, Any]] = [{"kind": "section", "text": s} for s in sections]
        if rest:
            more = Button("Show the rest", V_MORE + self.overflow.put(rest))
            rows = self._rows([*buttons, more], "hd_") if len(buttons) % BUTTONS_PER_ROW else \
                rows + self._rows([more], "hd_more_")
        items.extend(rows)
        return self._render("message.json.j2", {"fallback": cut(reply.text.strip(), FALLBACK_TEXT) or " ",
                                                "items": items})

    def _secret(self, reply: Reply) -> dict[str, Any]:
        """A secret shown once: the value exactly (rich text, no mrkdwn), and a notification
        preview (`text`) that does not hold it."""
        parts = reply.rich.get("secret") if reply.rich else None
        if not isinstance(parts, Mapping) or "value" not in parts:
            parts = {"label": "A private message", "value": "", "advice": "Ask me again to see it."}
        advice = ("Only you can see this message. It is shown once and not stored anywhere. "
                  + str(parts.get("advice") or "")).strip()
        items: list[dict[str, Any]] = [
            {"kind": "section", "text": escape_mrkdwn(str(parts.get("label") or "Your temporary password")) + ":"},
            *([{"kind": "literal", "text": str(parts["value"])}] if parts["value"] else []),
            {"kind": "section", "text": escape_mrkdwn(advice)},
        ]
        return self._render("message.json.j2", {"fallback": SECRET_PREVIEW, "items": items})

    def more_modal(self, key: str) -> dict[str, Any]:
        text = self.overflow.get(key)
        if text is None:
            text = "Sorry, that text is no longer available. Ask me again and I'll show it once more."
        sections = split_text(text)
        if len(sections) > VIEW_BLOCKS:
            sections = [*sections[: VIEW_BLOCKS - 1], "…"]
        return self._render("more.json.j2", {"title": "The rest", "items": [{"kind": "section", "text": s}
                                                                              for s in sections]})

    def modal(self, form: Form, metadata: str, intro: str = "") -> dict[str, Any]:
        fields: list[dict[str, Any]] = []
        for spec in form.fields[: VIEW_BLOCKS - 2]:
            fields.append({
                "name": spec.name, "label": _clip(spec.label, 2000), "kind": spec.kind, "required": spec.required,
                "placeholder": _clip(spec.placeholder, 150) if spec.placeholder else None,
                "options": [{"label": _clip(o.label, 75), "value": o.value[:OPTION_VALUE]} for o in spec.options[:100]],
            })
        intro_items = [{"kind": "section", "text": s} for s in split_text(intro)[:1]] if intro else []
        return self._render("modal.json.j2", {
            "callback_id": form.form_id[:255], "metadata": metadata[:METADATA],
            "title": _clip(form.title, MODAL_TITLE), "submit": _clip(form.submit_label, MODAL_TITLE),
            "fields": fields, "intro": intro_items,
        })

    def home(self, welcome: str, quick: Sequence[Button], sections: Sequence[Reply]) -> dict[str, Any]:
        items: list[dict[str, Any]] = [{"kind": "section", "text": s} for s in split_text(welcome)]
        items.extend(self._rows(quick, "home_"))
        for number, section in enumerate(sections):
            part: list[dict[str, Any]] = [{"kind": "divider"}]
            part.extend({"kind": "section", "text": s} for s in split_text(section.text))
            part.extend(self._rows(section.buttons, f"home{number}_"))
            if len(items) + len(part) > VIEW_BLOCKS - 1:
                items.append({"kind": "context", "text": "More is available: ask me in a direct message."})
                break
            items.extend(part)
        return self._render("home.json.j2", {"items": items})
