"""The walls between the rooms of bot/ (docs/architecture.md, "Import rules").

Every import counts: top-level, inside functions, under `if TYPE_CHECKING:`; relative imports are
resolved. The rules:

1. No cycles between modules.
2. Platform SDKs are imported only under bot/channels/<platform>/ (adapters translate, nothing more).
3. Nothing outside bot/channels/ imports a channel module, except the composition root
   (`COMPOSITION_ROOT`: the modules that wire channels in).
4. bot/core and bot/engine import nothing else in bot/ (they define the ports; the rooms implement
   them), except the few edges in `CORE_EXCEPTIONS`, each with its reason.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

BOT = Path(__file__).resolve().parents[2] / "bot"
SDKS = {"slack_bolt": "slack", "slack_sdk": "slack", "microsoft_agents": "teams"}

# Where channels are wired in. Keep it tiny; every entry says why it may name a channel.
COMPOSITION_ROOT = {
    # The `helpdesk` command: `serve` and `chat` start the channels, `teams` is a channel's command.
    "bot.cli": "the command line starts the channels (serve, chat, worker) and mounts their commands",
    # build_app: every process (serve, chat, worker, CLI commands) builds the app here, and asks
    # bot/channels/members.py which channels can list a conversation's members (ChannelMembers port).
    "bot.app": "builds the app every process runs and hands it the channel ports the settings enable",
}

# The core and the engine stand alone; these are the only edges out of them, each with its reason.
CORE_EXCEPTIONS = {
    # A turn is one transaction of the store (UnitOfWork: state, events and outbox rows commit
    # together); the store imports only the core's models and the engine's ConversationState.
    ("bot.core.pipeline", "bot.store.repos"): "each turn runs in the store's UnitOfWork",
    ("bot.core.pipeline", "bot.store.db"): "the one real clock (utcnow) is the database's",
}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path) -> tuple[dict[str, Path], dict[str, dict[str, int]]]:
    """Modules under `root` (a package directory) and, for each, what it imports: internal modules
    resolved to the longest existing module name, anything else by its full dotted name; the value
    is the first line that imports it."""
    modules = {_module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    edges: dict[str, dict[str, int]] = defaultdict(dict)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[tuple[str, bool]] = []  # (dotted name, named after `import` in a `from`)
            if isinstance(node, ast.Import):
                targets = [(alias.name, False) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                targets = [(module, False)] + [(f"{module}.{alias.name}", True) for alias in node.names]
            for target, imported_name in targets:
                resolved = target
                while resolved and resolved not in modules:
                    resolved = resolved.rpartition(".")[0]
                if resolved:
                    if resolved != name:
                        edges[name].setdefault(resolved, node.lineno)
                elif not imported_name and target.split(".")[0] != root.name:
                    edges[name].setdefault(target, node.lineno)  # outside bot/: an SDK, a library
    return modules, edges


def _cycles(modules: dict[str, Path], edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in modules:
        if start in index:
            continue
        work = [(start, iter(sorted(e for e in edges[start] if e in modules)))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(e for e in edges[child] if e in modules))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def boundary_problems(root: Path) -> list[str]:
    """Every broken rule, one readable line each (empty when the walls hold)."""
    modules, edges = import_graph(root)
    top = root.name
    channels, core, engine = f"{top}.channels", f"{top}.core", f"{top}.engine"

    def where(module: str, target: str) -> str:
        return f"{modules[module].relative_to(root.parent)}:{edges[module][target]}"

    problems = []
    for component in _cycles(modules, edges):
        links = [f"{m} -> {t} ({where(m, t)})" for m in component for t in sorted(edges[m]) if t in component]
        problems.append(f"import cycle between {', '.join(component)}: " + "; ".join(links))
    for module in sorted(modules):
        for target in sorted(edges[module]):
            first = target.split(".")[0]
            platform = SDKS.get(first)
            if platform is not None and not _in(module, f"{channels}.{platform}"):
                problems.append(f"{where(module, target)}: {module} imports {target} "
                                f"(allowed only in {top}/channels/{platform}/)")
            if _in(target, channels) and not _in(module, channels) and module not in COMPOSITION_ROOT:
                problems.append(f"{where(module, target)}: {module} imports the channel module {target} "
                                "(only channels and the composition root may; ask through a port in "
                                f"{top}/core/ports.py)")
            if ((_in(module, core) or _in(module, engine)) and first == top
                    and not (_in(target, core) or _in(target, engine))
                    and (module, target) not in CORE_EXCEPTIONS):
                problems.append(f"{where(module, target)}: {module} imports {target} (the core and the engine "
                                "import nothing else in bot/; add a port in bot/core/ports.py)")
    # An exception must not be a tunnel: what the core may import reaches nothing above it.
    floor = (core, engine, f"{top}.store", f"{top}.logs")
    for module, target in CORE_EXCEPTIONS:
        if target not in edges.get(module, {}):
            continue  # not used here (test_the_exceptions_still_exist keeps the list current)
        seen, todo = {target}, [target]
        while todo:
            for step in edges[todo.pop()]:
                if step in modules and step not in seen:
                    seen.add(step)
                    todo.append(step)
        above = sorted(m for m in seen if not any(_in(m, f) for f in floor))
        if above:
            problems.append(f"{module} may import {target} only while that reaches nothing above the store; "
                            f"it reaches {', '.join(above)}")
    return problems


def test_the_walls_between_the_rooms_of_bot_hold() -> None:
    problems = boundary_problems(BOT)
    assert not problems, "\n".join(problems)


def test_the_exceptions_still_exist() -> None:
    """An allowance nobody uses any more is removed, so the lists stay as small as the code."""
    modules, edges = import_graph(BOT)
    assert set(COMPOSITION_ROOT) <= set(modules)
    unused = [pair for pair in CORE_EXCEPTIONS if pair[1] not in edges[pair[0]]]
    assert not unused, unused
    naming_channels = {m for m in COMPOSITION_ROOT if any(_in(t, "bot.channels") for t in edges[m])}
    assert naming_channels == set(COMPOSITION_ROOT)


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "bot" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "bot"


def test_the_checker_sees_every_kind_of_broken_wall(tmp_path: Path) -> None:
    """The checker is not vacuous: a synthetic bot/ with one of each problem, hidden the ways real
    code hides imports (inside a function, under TYPE_CHECKING, relative)."""
    root = _package(tmp_path, {
        "__init__.py": "",
        "core/__init__.py": "",
        "core/models.py": "def f():\n    from bot.tickets import service\n",
        "core/pipeline.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bot.kb.search import Kb\n",
        "engine/__init__.py": "",
        "engine/engine.py": "from ..core import models\n",
        "tickets/__init__.py": "",
        "tickets/service.py": "from . import handler\n",
        "tickets/handler.py": "def g():\n    from .service import X\n",
        "kb/__init__.py": "",
        "kb/search.py": "import slack_sdk\n",
        "outages/__init__.py": "",
        "outages/audience.py": "from bot.channels.slack.api import SlackApi\n",
        "channels/__init__.py": "",
        "channels/slack/__init__.py": "",
        "channels/slack/api.py": "import slack_sdk\nimport microsoft_agents.activity\nfrom bot.core.models import A\n",
        "cli.py": "from bot.channels.slack import api\n",
    })
    problems = boundary_problems(root)
    text = "\n".join(problems)
    assert "import cycle between bot.tickets.handler, bot.tickets.service" in text
    assert "bot/tickets/handler.py:2" in text  # the function-level import, by its line
    assert "bot.kb.search imports slack_sdk" in text
    assert "bot.channels.slack.api imports microsoft_agents.activity (allowed only in bot/channels/teams/)" in text
    assert "bot.outages.audience imports the channel module bot.channels.slack.api" in text
    assert "bot.core.models imports bot.tickets.service" in text  # inside a function
    assert "bot.core.pipeline imports bot.kb.search" in text  # under TYPE_CHECKING
    # Allowed: the engine importing the core (relative), the composition root naming a channel,
    # a channel importing its own SDK and the core.
    assert "bot.engine.engine" not in text
    assert "bot/cli.py" not in text
    assert "bot.channels.slack.api imports slack_sdk" not in text
    assert len(problems) == 7, text  # `from bot.tickets import service` names the package and the module


def test_the_checker_passes_walls_that_hold(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "__init__.py": "",
        "core/__init__.py": "",
        "core/ports.py": "from typing import Protocol\nclass Members(Protocol): ...\n",
        "outages/__init__.py": "",
        "outages/audience.py": "from bot.core.ports import Members\n",
        "channels/__init__.py": "",
        "channels/slack/__init__.py": "",
        "channels/slack/members.py": "import slack_sdk\nfrom bot.core.ports import Members\n",
        "app.py": "def build():\n    from bot.channels.slack.members import M\n    from bot.outages import audience\n",
    })
    assert boundary_problems(root) == []


def test_an_allowed_core_import_cannot_tunnel_to_a_room(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "__init__.py": "",
        "core/__init__.py": "",
        "core/pipeline.py": "from bot.store.repos import UnitOfWork\n",
        "store/__init__.py": "",
        "store/repos.py": "from bot.store import db\n",
        "store/db.py": "def later():\n    from bot.tickets.service import open_ticket\n",
        "tickets/__init__.py": "",
        "tickets/service.py": "",
    })
    assert boundary_problems(root) == [
        "bot.core.pipeline may import bot.store.repos only while that reaches nothing above the store; "
        "it reaches bot.tickets.service"]

