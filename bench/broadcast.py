"""Broadcast benchmark: one outage notice to N members of a Slack channel through the real path,
against our rate-limited Slack Web API stand-in, uninterrupted and with `helpdesk serve` SIGKILLed
halfway and restarted.

    PYTHONPATH=. python bench/broadcast.py                      # 10,000 recipients, 100 msg/s allowed
    PYTHONPATH=. python bench/broadcast.py --recipients 2000 --rate 50 --runs kill

What runs, all real: tests/standins/slack_api.py on loopback (in this process) with a channel
C0BROADCAST of N generated members, `conversations.members` paged, and a workspace-wide
chat.postMessage limit of `--rate` calls a second (429 + Retry-After: 1 beyond it; per-channel
limit 1/s as Slack). `helpdesk serve` as a subprocess (HTTP mode, SQLite in a temporary directory,
HELPDESK_SLACK__API_URL at the stand-in) whose in-process outbox worker delivers through the
production SlackSender. The notice is posted by an admin from a shell, `helpdesk outage post
--members-of slack:C0BROADCAST --as ada.admin@example.com`, in its own process against the same
database. serve is configured as docs/outages.md advises: outbox `global_rate_per_second.slack` =
`slack.rate_per_minute_global`/60 = `--headroom` (0.95) x `--rate`.

Prints per run: recipients, allowed rate, bound (recipients / rate), actual time (from the notice
being committed to the last copy arriving; the killed run includes the restart), ratio, duplicates
(recipients with more than one copy), losses (with none), 429s answered by the stand-in.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.standins.slack_api import SlackStandIn, dm_of, synthetic_members  # noqa: E402

CHANNEL = "C0BROADCAST"
TOKEN = "xoxb-bench"
SECRET = "bench-signing-secret"
ADMIN = "ada.admin@example.com"
# serve is configured a little below what the workspace allows (docs/outages.md: two clocks and
# network jitter at exactly the limit mean 429s, and each one pauses the platform for Retry-After).
HEADROOM = 0.95


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broadcast:
    """One stand-in, one database, `helpdesk serve` processes started and killed on demand."""

    def __init__(self, tmp: str, recipients: int, rate: float, headroom: float = HEADROOM) -> None:
        self.recipients, self.rate = recipients, rate
        self.members = synthetic_members(recipients)
        self.standin = SlackStandIn(token=TOKEN, channel_rate=1.0, channel_burst=3, global_rate=rate,
                                    global_burst=max(1.0, rate / 10), channels={CHANNEL: self.members}).start()
        self.db = Path(tmp) / "helpdesk.db"
        self.port = free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
        self.env = {
            **base, "PYTHONPATH": str(ROOT), "HELPDESK_DATABASE__URL": f"sqlite+aiosqlite:///{self.db}",
            "HELPDESK_APP__DATA_DIR": tmp, "HELPDESK_LOG__LEVEL": "WARNING",
            # The shipped knowledge base: the shipped flows pin articles, and start-up checks they exist.
            "HELPDESK_SLACK__ENABLED": "true", "HELPDESK_SLACK__MODE": "http",
            "HELPDESK_SLACK__BOT_TOKEN": TOKEN, "HELPDESK_SLACK__SIGNING_SECRET": SECRET,
            "HELPDESK_SLACK__API_URL": self.standin.url,
            # The workspace's budget, configured once for the outbox and the Slack client.
            "HELPDESK_OUTBOX__GLOBAL_RATE_PER_SECOND": json.dumps({"slack": rate * headroom, "teams": 40}),
            "HELPDESK_SLACK__RATE_PER_MINUTE_GLOBAL": str(rate * headroom * 60),
        }
        self.serve: subprocess.Popen[bytes] | None = None
        self.log = open(Path(tmp) / "serve.log", "ab")  # noqa: SIM115 - closed in close()

    # ----- processes -------------------------------------------------------------------------

    def start_serve(self, timeout: float = 60.0) -> None:
        self.serve = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.serve.poll() is not None:
                raise RuntimeError(f"helpdesk serve exited with {self.serve.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("helpdesk serve did not become healthy")

    def kill_serve(self) -> None:
        assert self.serve is not None
        os.kill(self.serve.pid, signal.SIGKILL)
        self.serve.wait()

    def stop_serve(self) -> None:
        if self.serve is not None and self.serve.poll() is None:
            self.serve.send_signal(signal.SIGTERM)
            try:
                self.serve.wait(15)
            except subprocess.TimeoutExpired:
                self.kill_serve()

    def post_notice(self) -> str:
        """`helpdesk outage post` from a shell, as an admin would (its own process, same database)."""
        done = subprocess.run(
            [sys.executable, "-m", "bot.cli", "outage", "post", "--as", ADMIN, "--service", "Outlook",
             "--summary", "Email is delayed", "--severity", "major", "--members-of", f"slack:{CHANNEL}"],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"outage post failed ({done.returncode}): {done.stderr[-2000:]}")
        return done.stdout.strip()

    def close(self) -> None:
        self.stop_serve()
        self.standin.stop()
        self.log.close()

    # ----- observing -------------------------------------------------------------------------

    def delivered(self) -> int:
        """Notice copies the stand-in holds (cheap: counted under the stand-in's lock)."""
        with self.standin._lock:
            return sum(1 for messages in self.standin.messages.values() for m in messages
                       if str(((m.get("metadata") or {}).get("event_payload") or {}).get("key", ""))
                       .startswith("outage:"))

    def open_rows(self) -> int:
        with sqlite3.connect(self.db, timeout=30) as db:
            return int(db.execute("SELECT count(*) FROM outbox WHERE group_key LIKE 'outage:%' "
                                  "AND status IN ('pending', 'sending')").fetchone()[0])

    def wait_done(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.delivered() >= self.recipients and self.open_rows() == 0:
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.delivered()} of {self.recipients} copies after {timeout:.0f} s")

    def last_post_at(self) -> float:
        return max((c.at for c in self.standin.calls_to("chat.postMessage")), default=time.monotonic())

    def per_recipient(self) -> tuple[int, int, int]:
        """(duplicates, losses, keys sent twice) counted at the stand-in."""
        copies = {channel: [k for k in keys if k.startswith("outage:")]
                  for channel, keys in self.standin.delivered().items()}
        expected = [dm_of(user) for user in self.members]
        duplicates = sum(1 for channel in expected if len(copies.get(channel, [])) > 1)
        losses = sum(1 for channel in expected if not copies.get(channel))
        all_keys = [k for keys in copies.values() for k in keys]
        return duplicates, losses, len(all_keys) - len(set(all_keys))


def run(recipients: int, rate: float, kill_at: float | None, headroom: float = HEADROOM) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-broadcast-") as tmp:
        bench = Broadcast(tmp, recipients, rate, headroom)
        try:
            bench.start_serve()
            posted = time.monotonic()
            bench.post_notice()
            started = time.monotonic()
            killed_after: int | None = None
            restart_s = 0.0
            if kill_at is not None:
                while bench.delivered() < recipients * kill_at:
                    if time.monotonic() - started > recipients / rate * 5 + 60:
                        raise TimeoutError("the broadcast did not reach the kill point")
                    time.sleep(0.005)
                bench.kill_serve()
                killed_after = bench.delivered()
                down = time.monotonic()
                bench.start_serve()
                restart_s = time.monotonic() - down
            bench.wait_done(recipients / rate * 5 + 120)
            actual = bench.last_post_at() - started
            duplicates, losses, keys_twice = bench.per_recipient()
            limited = bench.standin.limited
            post_s = started - posted
        finally:
            bench.close()
    bound = recipients / rate
    return {"run": "killed+restarted" if kill_at is not None else "uninterrupted", "recipients": recipients,
            "rate": rate, "configured": round(rate * headroom, 2), "bound_s": round(bound, 1),
            "actual_s": round(actual, 1),
            "ratio": round(actual / bound, 3), "duplicates": duplicates, "losses": losses,
            "keys_twice": keys_twice, "http_429": limited, "killed_after": killed_after,
            "restart_s": round(restart_s, 1), "post_s": round(post_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=100.0, help="chat.postMessage calls a second the stand-in allows")
    parser.add_argument("--runs", choices=["both", "plain", "kill"], default="both")
    parser.add_argument("--headroom", type=float, default=HEADROOM,
                        help="serve's configured rate as a fraction of --rate (1 = exactly the limit)")
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction delivered when serve is SIGKILLed")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    if args.runs in ("both", "plain"):
        results.append(run(args.recipients, args.rate, None, args.headroom))
    if args.runs in ("both", "kill"):
        results.append(run(args.recipients, args.rate, args.kill_at, args.headroom))
    if args.json:
        for result in results:
            print(json.dumps(result))
        return
    print("`helpdesk serve` (in-process outbox worker, production SlackSender) against "
          "tests/standins/slack_api.py; notice posted with `helpdesk outage post --members-of slack:C0BROADCAST`.")
    print(f"{'run':<18}{'recipients':>11}{'rate/s':>8}{'config':>8}{'bound s':>9}{'actual s':>10}{'ratio':>7}"
          f"{'dups':>6}{'losses':>8}{'429s':>7}{'killed at':>11}{'restart s':>11}{'post s':>8}")
    for r in results:
        print(f"{r['run']:<18}{r['recipients']:>11}{r['rate']:>8.0f}{r['configured']:>8}{r['bound_s']:>9}{r['actual_s']:>10}"
              f"{r['ratio']:>7}{r['duplicates']:>6}{r['losses']:>8}{r['http_429']:>7}"
              f"{r['killed_after'] if r['killed_after'] is not None else '-':>11}{r['restart_s']:>11}"
              f"{r['post_s']:>8}")


if __name__ == "__main__":
    main()
