"""`make demo` = `helpdesk chat --as alice@example.com --web`: the chat in the terminal and the web
console served by the same process, with its address printed."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(180)
def test_demo_chat_also_serves_the_console_and_prints_its_address(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HELPDESK_APP__DATA_DIR": str(tmp_path),
           "HELPDESK_SERVER__PORT": str(port), "HELPDESK_LOG__LEVEL": "WARNING"}
    subprocess.run([sys.executable, "-m", "bot.cli", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=120)
    process = subprocess.Popen([sys.executable, "-m", "bot.cli", "chat", "--as", "alice@example.com", "--web"],
                               cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        line = ""
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and "Web console:" not in line:
            line = process.stdout.readline()
            assert line or process.poll() is None, "the demo exited"
        assert re.search(rf"Web console: http://localhost:{port}/console/ \(demo sign-in: .+\)", line), line
        for _ in range(50):
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/console/signin", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert page.status_code == 200 and "Demo sign-in" in page.text
    finally:
        assert process.stdin is not None
        process.stdin.close()  # end of input ends the chat, and the console with it
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
