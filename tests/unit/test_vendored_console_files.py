"""The console's vendored front-end files are the upstream packages, unmodified, and the console
never reaches the parts of them that are placeholders.

Chart.js ships a placeholder date adapter ("This method is not implemented: Check that a complete
date adapter is provided."). It is upstream code used only by `time` / `timeseries` scales; the
console draws bar and doughnut charts only. If a chart ever needs a time axis, a real adapter must be
vendored with it (and this test changed), never the placeholder relied on. The browser tests
(tests/web/test_console_browser.py) also fail on any script error while every chart is drawn.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

STATIC = Path(__file__).resolve().parents[2] / "bot" / "web" / "static"
VENDOR = STATIC / "vendor"


def test_vendored_files_match_the_checksums_in_their_readme() -> None:
    readme = (VENDOR / "README.md").read_text(encoding="utf-8")
    listed = dict(re.findall(r"\| `([\w.-]+\.js)` \|[^|]*\| `([0-9a-f]{64})` \|", readme))
    shipped = {p.name for p in VENDOR.glob("*.js")}
    assert listed and set(listed) == shipped, (listed, shipped)
    for name, digest in listed.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name


def test_console_charts_never_use_a_time_scale() -> None:
    script = (STATIC / "console.js").read_text(encoding="utf-8")
    chart_types = re.findall(r"""\btype\s*:\s*["'](\w+)["']""", script)
    assert chart_types, "no chart configurations found in console.js"
    assert set(chart_types) <= {"bar", "doughnut"}, chart_types
    assert not re.search(r"""["'](time|timeseries)["']""", script)
    assert "adapters" not in script  # no date adapter is configured, so none is needed
