"""Small builders shared by tests: a flows folder, an app on a given database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

INTAKE_FLOW = """
id: intake
title: Intake
category: hardware
triggers:
  examples: ["my monitor is broken", "keyboard does not work", "broken laptop screen"]
  keywords: [monitor, keyboard, laptop]
steps:
  - id: device
    kind: ask
    text: Which device?
    slot: device
  - id: since
    kind: ask
    text: Since when?
    slot: since
  - id: others
    kind: ask
    text: Anyone else affected?
    slot: others
  - id: done
    kind: end
    text: "Thanks, noted {{ device }} / {{ since }} / {{ others }}."
    outcome: resolved
"""

GREETING_FLOW = """
id: smalltalk
title: Small talk
category: smalltalk
it: false
triggers:
  examples: ["hello", "hi there", "good morning", "thanks"]
steps:
  - id: answer
    kind: end
    template: help
    outcome: resolved
"""


def write_flows(directory: Path, *flows: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for text in flows:
        ident = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("id:"))
        (directory / f"{ident}.yaml").write_text(text.lstrip(), encoding="utf-8")
    return directory


def settings_with_flows(tmp_path: Path, *flows: str, **overrides: Any) -> Any:
    from bot.settings import load_settings

    flows_dir = write_flows(tmp_path / "flows", *flows)
    values = {"app": {"data_dir": str(tmp_path / "data")}, "flows": {"dir": str(flows_dir)}}
    for section, items in overrides.items():
        values.setdefault(section, {}).update(items)
    return load_settings(**values)
