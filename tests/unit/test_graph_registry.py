"""The one list of self-service actions (bot/graph/actions/registry.py) and what leans on it."""

from __future__ import annotations

import ast
from pathlib import Path

from bot.flows_cli import ACTIONS as FLOW_CHECK_ACTIONS
from bot.graph.actions import base
from bot.graph.actions.registry import ACTION_NAMES, ACTIONS, BY_NAME, MUTATING, does
from bot.settings import ActionPolicySettings

PACKAGE = Path(base.__file__).parent
SHARED = {"__init__.py", "base.py", "registry.py", "runner.py", "identity.py"}


def test_each_action_is_listed_once_with_what_it_does() -> None:
    assert len(BY_NAME) == len(ACTIONS)
    for action in ACTIONS:
        assert action.does and action.does_for, action.name
    assert MUTATING <= ACTION_NAMES
    assert does("reset_password") == "reset your password"
    assert does("no_such_action") == "no_such_action"


def test_every_action_module_is_registered() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.name not in SHARED}
    registered = {action.run.__module__.rsplit(".", 1)[1] for action in ACTIONS}
    assert modules == registered


def test_action_modules_import_only_the_shared_base() -> None:
    """An action module never reaches the runner, the registry or the approval desk: adding an
    action cannot create an import cycle."""
    for path in PACKAGE.glob("*.py"):
        if path.name in SHARED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("bot.graph.actions"):
                    assert node.module == "bot.graph.actions.base", (path.name, node.module)
                assert node.module != "bot.graph.approvals", path.name


def test_offline_flow_check_knows_the_same_actions() -> None:
    # `helpdesk flows validate` runs without the Graph package; its list must match the registry.
    assert FLOW_CHECK_ACTIONS == ACTION_NAMES


def test_default_sensitive_actions_are_registered() -> None:
    assert set(ActionPolicySettings().sensitive) <= ACTION_NAMES
