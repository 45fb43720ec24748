"""A notice to every member of a Slack channel through a real `helpdesk serve` subprocess, killed
(SIGKILL) midway and restarted: every member gets exactly one copy (bench/broadcast.py, small).

~30 s: two serve start-ups and one `helpdesk outage post` process."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_broadcast", ROOT / "bench" / "broadcast.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_sigkill_midway_and_restart_delivers_exactly_one_copy_each() -> None:
    result = _bench().run(recipients=300, rate=100.0, kill_at=0.5)
    assert result["killed_after"] is not None and 150 <= result["killed_after"] < 300  # killed midway
    assert result["losses"] == 0
    assert result["duplicates"] == 0
    assert result["keys_twice"] == 0
