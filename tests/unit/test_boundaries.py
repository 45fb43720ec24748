"""Adapters translate, nothing more: platform SDKs are imported only under bot/channels/<platform>/."""

from __future__ import annotations

import ast
from pathlib import Path

BOT = Path(__file__).resolve().parents[2] / "bot"
SDKS = {"slack_bolt": "slack", "slack_sdk": "slack", "microsoft_agents": "teams"}


def _imports(tree: ast.AST) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
    return found


def test_platform_sdks_are_imported_only_in_their_channel_package() -> None:
    problems = []
    files = sorted(BOT.rglob("*.py"))
    assert files
    for path in files:
        relative = path.relative_to(BOT)
        for module, line in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            root = module.split(".")[0]
            platform = SDKS.get(root)
            if platform is None:
                continue
            if relative.parts[:2] != ("channels", platform):
                problems.append(f"bot/{relative}:{line} imports {module} (allowed only in bot/channels/{platform}/)")
    assert not problems, "\n".join(problems)
