"""The README's module map names every module under exporter/, only those, bottom layer first."""

from __future__ import annotations

import re

from tests.unit.test_layers import LAYERS, MODULES, ROOT, layer_of, module_name

README = ROOT / "README.md"
START, END = "<!-- module-map:start -->", "<!-- module-map:end -->"
ENTRY = re.compile(r"^- `(exporter/[\w/.]*)`: \S")


def listed() -> list[str]:
    """The map's entries in order: module paths, and packages as `exporter/name/`."""
    text = README.read_text(encoding="utf-8")
    assert text.count(START) == 1
    assert text.count(END) == 1
    lines = text[text.index(START) + len(START) : text.index(END)].strip().splitlines()
    entries = []
    for line in lines:
        match = ENTRY.match(line)
        assert match, f"not a module map entry (- `exporter/...`: what it holds): {line!r}"
        entries.append(match[1])
    return entries


def on_disk() -> set[str]:
    """Every module, a package's __init__.py named by the package's folder."""
    out = set()
    for path in MODULES.values():
        relative = path.relative_to(ROOT).as_posix()
        is_package = path.name == "__init__.py" and path.parent != ROOT / "exporter"
        out.add(relative.removesuffix("__init__.py") if is_package else relative)
    return out


def as_module(entry: str) -> str:
    return module_name(ROOT / (entry + "__init__.py" if entry.endswith("/") else entry))


def test_the_map_lists_each_module_once() -> None:
    entries = listed()
    assert len(entries) == len(set(entries))


def test_every_listed_module_exists() -> None:
    missing = [entry for entry in listed() if entry not in on_disk()]
    assert not missing, f"the README's module map lists modules that do not exist: {missing}"


def test_every_module_is_listed() -> None:
    unlisted = sorted(on_disk() - set(listed()))
    assert not unlisted, f"add these to the README's module map: {unlisted}"


def test_the_map_runs_bottom_layer_first() -> None:
    order = [layer.name for layer in LAYERS]
    seen = [layer_of(as_module(entry)).name for entry in listed()]
    ranks = [order.index(name) for name in seen]
    assert ranks == sorted(ranks), list(zip(listed(), seen, strict=True))


def test_the_checks_see_a_missing_and_an_unlisted_module() -> None:
    """The parsing itself: an entry needs a path and a description, and __init__ files map to packages."""
    assert ENTRY.match("- `exporter/sync/engine.py`: one sync")
    assert not ENTRY.match("- `exporter/sync/engine.py`")
    assert "exporter/sync/" in on_disk()
    assert "exporter/__init__.py" in on_disk()
    assert as_module("exporter/sync/") == "exporter.sync"
