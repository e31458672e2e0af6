"""Imports run one way: __main__ -> cli -> bench/analysis -> engine -> methods -> config ->
models/mixing/losses/viz -> data -> skeleton -> errors/seeds/distributed, and no function imports
a module of the package.

Every module under ``src/shapmix`` is parsed with :mod:`ast` (nothing is imported): a module may
import its own top-level package and packages of a lower layer only; an import inside a
function, or a call of ``importlib.import_module`` / ``__import__``, is refused whatever it
imports from the package (a delayed import of a heavy third-party library, e.g. matplotlib,
is allowed).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "shapmix"
SOURCE = Path(__file__).resolve().parents[1] / "src" / PACKAGE

# Layer of every top-level module or package of shapmix: a module may import a lower layer only
# (or its own top-level package).  Packages on one layer do not import each other.
LAYERS = {
    "errors": 0,
    "seeds": 0,
    "distributed": 0,
    "skeleton": 1,
    "data": 2,
    "models": 3,
    "mixing": 3,
    "losses": 3,
    "viz": 3,
    "config": 4,
    "methods": 5,
    "engine": 6,
    "bench": 7,
    "analysis": 7,
    "cli": 8,
    "__main__": 9,  # python -m shapmix: runs the command line
}
ROOT = ""
"""The top-level ``shapmix/__init__.py`` (the public API may gather names from every layer)."""
ROOT_LAYER = max(LAYERS.values()) + 1
DYNAMIC_IMPORTS = {"import_module", "__import__"}


def module_name(path: Path, source: Path = SOURCE) -> tuple[str, bool]:
    """``(dotted name, is a package __init__)`` of a file under ``source``."""
    parts = list(path.relative_to(source.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    package = module.split(".") if is_package else module.split(".")[:-1]
    if node.level == 0:
        return node.module or ""
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(source_text: str, module: str, is_package: bool = False) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """``(module-level imports, imports and dynamic imports inside functions)`` of the package:
    each a list of ``(imported shapmix module, line)``; a dynamic import is ``("<dynamic>", line)``."""
    top: list[tuple[str, int]] = []
    local: list[tuple[str, int]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            targets: list[str] = []
            if isinstance(child, ast.ImportFrom):
                targets = [_resolve(child, module, is_package)]
            elif isinstance(child, ast.Import):
                targets = [alias.name for alias in child.names]
            elif isinstance(child, ast.Call):
                function = child.func
                name = function.id if isinstance(function, ast.Name) else getattr(function, "attr", None)
                if name in DYNAMIC_IMPORTS:
                    local.append(("<dynamic>", child.lineno))
            for target in targets:
                if target == PACKAGE or target.startswith(PACKAGE + "."):
                    (local if in_function else top).append((target, child.lineno))
            visit(child, inside)

    visit(ast.parse(source_text), False)
    return top, local


def layer_of(module: str) -> tuple[str, int]:
    """``(top-level name, layer)`` of a shapmix module (``shapmix`` itself: the root)."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ROOT
    return top, ROOT_LAYER if top == ROOT else LAYERS[top]


def violations(source_text: str, module: str, is_package: bool = False) -> list[str]:
    """What breaks the one-way rule in one module's source."""
    own, own_layer = layer_of(module)
    top, local = imports_of(source_text, module, is_package)
    # The one exception: the root's lazy public API (``shapmix.NAME`` imports NAME's home on first
    # use, so that ``import shapmix`` stays light) loads its names with import_module.
    local = [(target, line) for target, line in local if not (module == PACKAGE and target == "<dynamic>")]
    problems = [f"{module}:{line}: function-local import of {target}" for target, line in local]
    for target, line in top:
        other, other_layer = layer_of(target)
        if other != own and other_layer >= own_layer:
            problems.append(
                f"{module}:{line}: imports {target} (layer {other_layer}) from layer {own_layer}"
            )
    return problems


def _modules() -> list[Path]:
    return sorted(SOURCE.rglob("*.py"))


def test_every_top_level_module_has_a_layer():
    tops = {path.relative_to(SOURCE).parts[0].removesuffix(".py") for path in _modules()} - {"__init__"}
    assert tops == set(LAYERS), "place every top-level module or package of shapmix in LAYERS"


@pytest.mark.parametrize("path", _modules(), ids=lambda path: str(path.relative_to(SOURCE)))
def test_imports_run_one_way_and_none_is_delayed(path):
    module, is_package = module_name(path)
    assert violations(path.read_text(encoding="utf-8"), module, is_package) == []


def test_the_checker_catches_an_upward_a_sideways_and_a_delayed_import():
    assert violations("from ..engine.trainer import train\n", "shapmix.data.format") == [
        "shapmix.data.format:1: imports shapmix.engine.trainer (layer 6) from layer 2"
    ]
    assert violations("from ..models import build_model\n", "shapmix.mixing.stmix") == [
        "shapmix.mixing.stmix:1: imports shapmix.models (layer 3) from layer 3"
    ]
    delayed = "def f():\n    from ..config import ConfigError\n"
    assert violations(delayed, "shapmix.engine.trainer") == [
        "shapmix.engine.trainer:2: function-local import of shapmix.config"
    ]
    dynamic = "import importlib\ndef f():\n    return importlib.import_module('shapmix.engine')\n"
    assert violations(dynamic, "shapmix.cli.train") == ["shapmix.cli.train:3: function-local import of <dynamic>"]
    # downward, within the own package, and a delayed third-party import are fine
    fine = "from ..data.format import load_dataset\nfrom .stmix import STMix\ndef f():\n    import matplotlib\n"
    assert violations(fine, "shapmix.mixing.shapmix") == []
    assert violations("from . import train\n", "shapmix.cli", is_package=True) == []
