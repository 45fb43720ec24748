"""The image and the compose file, checked without a container engine (none runs on the build
machine): the Dockerfile's base, user, lock, health check and entry point; the compose services,
their order, health checks and environment, and that no secret value is written in any file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SECRET_NAMES = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSPHRASE)", re.IGNORECASE)


def compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def dockerfile() -> list[str]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    joined = re.sub(r"\\\n", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_dockerfile_slim_non_root_locked_healthchecked() -> None:
    lines = dockerfile()
    assert re.fullmatch(r"FROM python:3\.1[1-9]-slim", lines[0])
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert any("pip install -c requirements.lock" in line for line in lines if line.startswith("RUN"))
    health = next(line for line in lines if line.startswith("HEALTHCHECK"))
    assert "/healthz" in health
    assert 'ENTRYPOINT ["helpdesk"]' in lines and 'CMD ["serve"]' in lines
    for line in lines:  # nothing secret baked into the image
        if line.startswith(("ENV", "ARG")):
            assert not SECRET_NAMES.search(line), line


def test_the_entry_point_has_the_commands_the_image_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "bot.cli", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    for command in ("serve", "worker", "db", "purge", "person"):
        assert re.search(rf"^\W*{command}\b", out, re.MULTILINE), command


def test_compose_services_order_and_health() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "migrate", "bot1", "bot2", "worker", "proxy"}
    assert services["postgres"]["healthcheck"]["test"]
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("bot1", "bot2"):
        bot = services[name]
        assert bot["command"] == ["serve"]
        assert bot["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert bot["depends_on"]["postgres"] == {"condition": "service_healthy"}
        assert "/readyz" in " ".join(bot["healthcheck"]["test"])
    assert services["worker"]["command"] == ["worker"]
    assert services["proxy"]["depends_on"] == {"bot1": {"condition": "service_healthy"},
                                               "bot2": {"condition": "service_healthy"}}
    caddy = (DEPLOY / "Caddyfile").read_text(encoding="utf-8")
    assert "bot1:3000" in caddy and "bot2:3000" in caddy and "round_robin" in caddy and "/readyz" in caddy


def test_compose_environment_is_production_shaped_and_holds_no_secret() -> None:
    services = compose()["services"]
    for name in ("migrate", "bot1", "bot2", "worker"):
        env = services[name]["environment"]
        assert env["HELPDESK_DIRECTORY__BACKEND"] == "graph"  # never the demo directory
        assert env["HELPDESK_OUTBOX__IN_PROCESS"] == "false"  # the worker delivers
        assert env["HELPDESK_DATABASE__URL"].startswith("postgresql+asyncpg://")
        assert services[name]["env_file"] == [".env"]
    for service in services.values():
        env = service.get("environment") or {}
        for key, value in env.items():
            if SECRET_NAMES.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+(:[?-][^}]*)?\}", str(value)), f"{key} has a literal value"
        url = str(env.get("HELPDESK_DATABASE__URL", ""))
        if url:
            assert re.search(r":\$\{POSTGRES_PASSWORD[^}]*\}@", url), "the database password is not interpolated"
    example = (DEPLOY / "env.example").read_text(encoding="utf-8")
    for line in example.splitlines():
        if "=" in line and not line.startswith("#") and SECRET_NAMES.search(line.split("=")[0]):
            assert line.split("=", 1)[1] == "", line
    assert ".env" in (ROOT / ".gitignore").read_text(encoding="utf-8").split()
