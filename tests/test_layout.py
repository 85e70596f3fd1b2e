"""The package's layout: dependencies run one way, and moved names keep working.

Every ``trainability.*`` import in ``src/`` counts, at module level or inside a function, under
``TYPE_CHECKING`` too: an import inside a function is still a dependency, only a later one.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).parent.parent / "src"


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the trainability modules it imports (``from trainability import adapters`` is an
    import of ``trainability.adapters``; ``from trainability import fit`` one of ``trainability``)."""
    modules = _modules()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            edges[name] |= {t for t in targets if t in modules and t != name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
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
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def _imports(edges: dict[str, set[str]], module: str) -> set[str]:
    """Every module ``module`` depends on, directly or not."""
    seen, todo = set(), [module]
    while todo:
        for target in edges[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


@pytest.mark.parametrize(("lower", "higher"), [
    ("trainability.adapters", "trainability.monitor"),
    ("trainability.adapters", "trainability.doctor"),
    ("trainability.adapters", "trainability.integrations"),
    ("trainability.doctor", "trainability.monitor"),
    ("trainability.doctor.rules", "trainability.doctor.plot"),
    ("trainability.monitor", "trainability.integrations"),
    ("trainability.monitor", "trainability.experiments"),
    ("trainability.doctor", "trainability.cli"),
    ("trainability.repair", "trainability.cli"),
])  # fmt: skip
def test_dependencies_run_one_way(lower, higher):
    edges = import_graph()
    for module in [m for m in edges if m == lower or m.startswith(lower + ".")]:
        reached = {m for m in _imports(edges, module) if m == higher or m.startswith(higher + ".")}
        assert not reached, f"{module} imports {sorted(reached)}"


def test_import_trainability_imports_no_optional_framework():
    code = ("import sys, trainability, trainability.integrations; "
            "print(sorted(m for m in ('keras', 'lightning', 'transformers', 'ray') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_old_lightning_path_warns_and_works():
    sys.modules.pop("trainability.lightning", None)
    with pytest.warns(DeprecationWarning, match="trainability.integrations.lightning"):
        old = importlib.import_module("trainability.lightning")
    from trainability.integrations.lightning import TrainabilityCallback

    assert old.TrainabilityCallback is TrainabilityCallback


def test_old_keras_callback_path_warns_and_works():
    import os

    if "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("keras")
    from trainability.adapters import keras as keras_adapter
    from trainability.integrations import keras as integration

    if keras_adapter.backend() != "torch":
        pytest.skip("Keras runs on another backend here")
    with pytest.warns(DeprecationWarning, match="trainability.integrations.keras"):
        old = keras_adapter.TrainabilityCallback
    assert old is integration.TrainabilityCallback
