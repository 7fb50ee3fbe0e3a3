"""The folder layout is the architecture: no import runs back up a layer, and no module is long unexplained.

Imports are read with ast from every module under exporter/ (TYPE_CHECKING ones included: a type-only
import up a layer is still a dependency a newcomer has to untangle).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "exporter"
MAX_LINES = 400
LONG_REASON = "Long because"


@dataclass(frozen=True)
class Layer:
    name: str
    modules: tuple[str, ...]  # module names or package prefixes
    why: str
    may_import: tuple[str, ...] | None = None  # narrower than "every layer below", when given


# Bottom first: a module may import its own layer and the layers below it, never one above.
LAYERS = (
    Layer(
        "base",
        ("exporter", "exporter.logs", "exporter.filestamp"),
        "the version, the redacting logs and file-change stamps: everything else uses them",
    ),
    Layer("runloop", ("exporter.runloop",), "Runloop's API as it is (client, errors, key, gate, records)"),
    Layer(
        "metrics", ("exporter.metrics",), "figures from records and their exposition; ask nothing of the API"
    ),
    Layer("sync", ("exporter.sync",), "what to ask the API each cycle, turned into metrics snapshots"),
    Layer(
        "checkpoint",
        ("exporter.checkpoint",),
        "what the parts hold, kept on disk for a restart: reads the syncs' state, never drives a sync",
    ),
    Layer(
        "http",
        ("exporter.http",),
        "serves what metrics rendered; never drives a sync (the app wires the two)",
    ),
    Layer(
        "simulator",
        ("exporter.simulator",),
        "a stand-in Runloop for --demo and tests: shares no exporter logic, so it cannot share its bugs",
        may_import=("base", "runloop"),
    ),
    Layer(
        "settings",
        ("exporter.settings",),
        "every knob, checked with the lower layers' own defaults and validators",
    ),
    Layer(
        "app",
        ("exporter.app", "exporter.publisher", "exporter.resume"),
        "builds one of everything from the settings, for every mode, and joins the parts' outcomes",
    ),
    Layer(
        "modes",
        (
            "exporter.serve",
            "exporter.loops",
            "exporter.once",
            "exporter.check",
            "exporter.cli",
            "exporter.__main__",
        ),
        "the process: signals, stdout, exit codes; nothing imports them but each other",
    ),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> Layer:
    """The layer holding `module`: the longest matching name or package prefix."""
    best: tuple[int, Layer] | None = None
    for layer in LAYERS:
        for prefix in layer.modules:
            if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > best[0]
            ):
                best = (len(prefix), layer)
    assert best is not None, f"{module} is in no layer: add it to LAYERS with a why"
    return best[1]


def imports_of(path: Path) -> set[str]:
    """The exporter modules the module at `path` imports."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    return imports_in(path.read_text(encoding="utf-8"), package)


def imports_in(source: str, package: str) -> set[str]:
    """The exporter modules `source` imports (`from exporter import x` counts as exporter.x when x is one)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                child = f"{base}.{alias.name}"
                out.add(child if child in MODULES else base)
    return {name for name in out if name == "exporter" or name.startswith("exporter.")}


def allowed(layer: Layer) -> set[str]:
    index = LAYERS.index(layer)
    below = {other.name for other in LAYERS[: index + 1]}
    return below if layer.may_import is None else {*layer.may_import, layer.name}


def test_every_layer_says_why_and_the_order_names_each_once() -> None:
    assert all(layer.why for layer in LAYERS)
    prefixes = [prefix for layer in LAYERS for prefix in layer.modules]
    assert len(prefixes) == len(set(prefixes))
    names = [layer.name for layer in LAYERS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_runs_up_a_layer(module: str) -> None:
    layer = layer_of(module)
    ok = allowed(layer)
    upward = sorted(
        f"{name} ({layer_of(name).name})"
        for name in imports_of(MODULES[module])
        if layer_of(name).name not in ok
    )
    assert not upward, f"{module} ({layer.name}) imports from a layer it may not: {upward}"


def test_the_check_sees_an_upward_import() -> None:
    """The checker itself: a sync module importing the app is caught, a metrics import is not."""
    source = "from exporter.app import build\nif X:\n    from ..metrics import aggregate\nimport httpx\n"
    assert imports_in(source, "exporter.sync") == {"exporter.app", "exporter.metrics.aggregate"}
    sync = layer_of("exporter.sync.anything")
    assert sync.name == "sync"
    assert layer_of("exporter.app").name not in allowed(sync)
    assert layer_of("exporter.metrics.aggregate").name in allowed(sync)
    simulator = layer_of("exporter.simulator.world")
    assert layer_of("exporter.runloop.models").name in allowed(simulator)
    assert layer_of("exporter.sync.engine").name not in allowed(simulator)


def long_reason(path: Path) -> bool:
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return any(line.strip().startswith(LONG_REASON) for line in docstring.splitlines())


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_over_400_lines_says_why_at_its_top(module: str) -> None:
    path = MODULES[module]
    relative = path.relative_to(ROOT).as_posix()
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES or long_reason(path), (
        f"{relative} has {lines} lines: split it, or start a line of its docstring with {LONG_REASON!r}"
    )
