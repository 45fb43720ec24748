"""Triage quality on a development split and a held-out split (issue 15).

CLINC150's train negatives (../shared/evaldata/clinc150) are split in two by a stable hash of the
text: `dev` (tune on these) and `held` (never looked at while tuning; measured only). The IT side
uses ../shared/evaldata/triage_dev.jsonl (dev) and tests/data/triage_holdout.jsonl (held out).

    .venv/bin/python bench/triage_split.py
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.engine.loader import load_flows  # noqa: E402
from bot.engine.triage import Triage  # noqa: E402
from bot.flows_cli import NOT_IT_LABELS, evaluate  # noqa: E402


def rows(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def clinc_split(data: list[dict[str, str]], part: str) -> list[dict[str, str]]:
    """Half the negatives by a stable hash: 'dev' (even) or 'held' (odd)."""
    want = 0 if part == "dev" else 1
    return [r for r in data if hashlib.sha256(r["text"].encode()).digest()[0] % 2 == want]


def shared(relative: str) -> Path:
    for base in (ROOT.parent, ROOT.parent.parent):
        candidate = base / "shared" / "evaldata" / relative
        if candidate.exists():
            return candidate
    raise SystemExit(f"shared/evaldata/{relative} not found")


def main() -> None:
    flows = load_flows(ROOT / "flows").flows
    triage = Triage(dict(flows))
    clinc = rows(shared("clinc150/clinc_train_negatives.jsonl"))
    sets = {"dev": rows(shared("triage_dev.jsonl")), "held": rows(ROOT / "tests" / "data" / "triage_holdout.jsonl")}
    for part in ("dev", "held"):
        report = evaluate(triage, sets[part], flows)
        worst = min((v["recall"], k) for k, v in report.per_label.items() if v["support"])
        negatives = clinc_split(clinc, part)
        into = [(r["text"], g.intent, round(g.confidence, 2)) for r in negatives
                if (g := triage.classify(r["text"])).intent not in NOT_IT_LABELS]
        print(f"{part}: accuracy {report.accuracy:.3f} (n={report.total}), worst recall {worst[0]:.2f} ({worst[1]}), "
              f"CLINC negatives into an IT flow {len(into)}/{len(negatives)} = {len(into) / len(negatives):.1%}")
        outcomes = evaluate(triage, negatives, flows).outcomes + report.outcomes
        print("   what the person gets:", dict(sorted(outcomes.items())))
        if "-v" in sys.argv:
            for m in report.misrouted:
                print("   miss", m)
            for item in into:
                print("   neg ", item)


if __name__ == "__main__":
    main()
