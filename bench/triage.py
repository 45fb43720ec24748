"""Triage speed: one message against all flows, messages per second and p50/p99 latency.

Compares the shipped Triage with a naive baseline (rapidfuzz WRatio over every trigger example) in
the same run. Run on purpose: `PYTHONPATH=. python bench/triage.py [--n 2000]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from rapidfuzz import fuzz, process

from bot.engine.loader import load_flows
from bot.engine.triage import Triage

ROOT = Path(__file__).resolve().parents[1]


def messages() -> list[str]:
    holdout = ROOT / "tests" / "data" / "triage_holdout.jsonl"
    texts = [json.loads(line)["text"] for line in holdout.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts.append("Hi, sorry to bother you. Since this morning my laptop is slow, the vpn keeps dropping and "
                 "outlook asks for my password every ten minutes. I restarted twice. Could someone look? " * 3)
    return texts


def measure(name: str, classify: Callable[[str], object], texts: list[str], n: int) -> dict[str, float | str]:
    for text in texts[:20]:
        classify(text)  # warm caches
    timings: list[float] = []
    started = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        classify(texts[i % len(texts)])
        timings.append(time.perf_counter() - t0)
    total = time.perf_counter() - started
    timings.sort()
    return {"name": name, "msgs_per_s": n / total, "p50_ms": statistics.median(timings) * 1000,
            "p99_ms": timings[int(len(timings) * 0.99) - 1] * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    flows = load_flows(ROOT / "flows").flows
    t0 = time.perf_counter()
    triage = Triage(flows)
    build = time.perf_counter() - t0
    examples = [(f.id, e) for f in flows.values() for e in f.triggers.examples]
    choices = [e.lower() for _, e in examples]

    def naive(text: str) -> str:
        found = process.extractOne(text.lower(), choices, scorer=fuzz.WRatio)
        return examples[found[2]][0] if found else "fallback"

    texts = messages()
    rows = [measure("Triage (shipped)", triage.classify, texts, args.n),
            measure("naive WRatio baseline", naive, texts, args.n)]
    print(f"{len(flows)} flows, {len(examples)} examples; Triage built in {build:.2f} s")
    print(f"{'model':<24} {'msgs/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for row in rows:
        print(f"{row['name']:<24} {row['msgs_per_s']:>10.0f} {row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f}")


if __name__ == "__main__":
    main()
