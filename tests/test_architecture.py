"""The import contract: the tree's layers, checked on every import in the package (module level or inside
a function), so that a wrong-way import fails the suite instead of waiting for a reviewer.

Layers, lowest first (README "Architecture"); a module may import its own layer and the ones below:
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "edgemux"

LAYERS = (
    (
        "errors",
        "programs",
        "specs",
        "types",
        "events",
        "paths",
        "yamlfile",
    ),  # the base: dataclasses, errors, files
    ("sandbox",),  # runs model-written programs confined
    ("answers", "decide"),  # pure: what a sample says, and the decision
    ("testing",),  # scripted engines for tests (they play trace kill by decide's rule)
    ("profiles",),  # a profile's file, read and checked
    ("catalog",),  # models on disk and on the wire
    ("memory",),  # memory estimates
    ("engine",),  # llama.cpp and remote engines
    ("schedule",),  # Mux: residency, loading, decoding
    ("selection",),  # runs, search, profile build
    ("measure",),  # eval, reports, benchmarks
    ("server",),  # the OpenAI-compatible server
    ("ui",),  # terminal rendering
    ("cli", "__main__"),  # commands
)
PURE = ("answers", "decide")
# What a pure layer must not import, inside the package or out: the engine, the network, the terminal.
IMPURE = ("llama_cpp", "urllib", "http", "socket", "httpx", "requests", "huggingface_hub", "rich", "click",
          "starlette", "uvicorn", "openai", "edgemux.engine", "edgemux.catalog", "edgemux.schedule",
          "edgemux.server", "edgemux.ui", "edgemux.cli")  # fmt: skip


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported(name: str, typing: bool = True) -> Iterator[str]:
    """Every module ``name`` imports (absolute names; for ``from X import y``, X.y when that is a module);
    without ``typing``, not those under ``if TYPE_CHECKING:`` (they load nothing)."""
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if not typing:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
                node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules()]
            yield from submodules or [target]


@functools.cache
def graph(typing: bool = True) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (the package root, the public façade, left out)."""
    return {m: {t for t in imported(m, typing) if t in modules() and t not in (m, "edgemux")} for m in modules()}


def layer_of(name: str) -> int | None:
    parts = name.split(".")
    if len(parts) == 1:
        return None  # edgemux/__init__.py: the public API and the composition root that wires the layers
    return next(i for i, group in enumerate(LAYERS) if parts[1] in group)


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in modules() if len(m.split(".")) > 1 and not any(m.split(".")[1] in g for g in LAYERS)]
    assert unplaced == [], f"add these to LAYERS (and the README's architecture): {unplaced}"


def test_nothing_imports_upward() -> None:
    upward = [
        f"{m} -> {t}"
        for m, targets in graph().items()
        for t in targets
        if (a := layer_of(m)) is not None and (b := layer_of(t)) is not None and b > a
    ]
    assert upward == []


def test_the_pure_layers_reach_no_engine_network_or_terminal() -> None:
    found = [
        f"{m} imports {t}"
        for m in modules()
        if m.split(".")[1:2] and m.split(".")[1] in PURE
        for t in imported(m)
        if any(t == bad or t.startswith(bad + ".") for bad in IMPURE)
    ]
    assert found == []


def test_no_import_cycles() -> None:
    # Tarjan's strongly connected components: a cycle is a component of more than one module.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph()[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(modules()):
        if v not in index:
            visit(v)
    assert cycles == []


def test_import_chains_are_at_most_12_deep() -> None:
    """The longest chain of modules that load one another (imports for type checking load nothing)."""

    @functools.cache
    def depth(m: str) -> int:
        return 1 + max((depth(t) for t in graph(typing=False)[m]), default=0)

    deepest = max(modules(), key=depth)
    assert depth(deepest) <= 12, deepest


def test_the_top_level_stays_small() -> None:
    entries = [p.name for p in PACKAGE.iterdir() if p.name != "__pycache__" and not p.name.startswith(".")]
    assert len(entries) <= 25, sorted(entries)


def test_modules_and_functions_stay_readable() -> None:
    """No module over 400 lines, no function over 60 (from its def to its last line, docstring included)."""
    long_modules, long_functions = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(PACKAGE.parent).as_posix()
        if len(text.splitlines()) > 400:
            long_modules.append(name)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno is not None
                if node.end_lineno - node.lineno + 1 > 60:
                    long_functions.append(f"{name}:{node.name}")
    assert (long_modules, long_functions) == ([], [])


@pytest.mark.parametrize("module", ["edgemux.decide.mux", "edgemux.answers.extract", "edgemux.decide.confidence"])
def test_a_pure_module_imports_without_the_runtime(module: str) -> None:
    """Importing the decision core loads no llama.cpp, YAML, fetching or runtime (checked in a fresh process)."""
    import subprocess
    import sys

    heavy = ("llama_cpp", "yaml", "edgemux.catalog.fetch", "edgemux.schedule.runtime", "edgemux.engine.embeddings")
    probe = f"import sys, {module}; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_command_is_found_where_the_cli_looks_for_it() -> None:
    """The CLI imports a command's module only when it runs: each command must be listed with its module."""
    import importlib

    from edgemux.cli.common import COMMAND_MODULES, cli

    for module in set(COMMAND_MODULES.values()):
        importlib.import_module(f"edgemux.cli.{module}")
    found = {name: command.callback.__module__ for name, command in cli.commands.items() if command.callback}
    assert found == {name: f"edgemux.cli.{module}" for name, module in COMMAND_MODULES.items()}
