"""The PyTorch engine's modules (python_backends/) import one another in one direction only."""

from __future__ import annotations

import ast
import subprocess
import sys
from importlib import resources
from pathlib import Path

BACKENDS = Path(str(resources.files("tritonkit.python_backends")))
ENGINE = ["llm_sequence", "llm_metrics", "llm_kv", "llm_steps", "llm_slots", "llm_scheduler"]


def _imports(module: str) -> set[str]:
    """Sibling modules ``module`` imports anywhere, function bodies included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse((BACKENDS / f"{module}.py").read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return {name for name in found if (BACKENDS / f"{name}.py").exists()}


def _cycle_through(start: str, graph: dict[str, set[str]]) -> list[str]:
    """A path of imports from ``start`` back to ``start``, or [] when there is none."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        module, path = stack.pop()
        for name in graph.get(module, set()):
            if name == start:
                return [*path, name]
            if name not in seen:
                seen.add(name)
                stack.append((name, [*path, name]))
    return []


def test_no_backend_module_imports_itself_through_others() -> None:
    graph = {path.stem: _imports(path.stem) for path in BACKENDS.glob("llm_*.py")}
    assert all(name in graph for name in ENGINE)
    cycles = [cycle for module in graph if (cycle := _cycle_through(module, graph))]
    assert cycles == []


def test_the_engine_layers_point_down() -> None:
    """Each engine module imports only those listed before it (the request record is at the bottom)."""
    for index, module in enumerate(ENGINE):
        engine_imports = _imports(module) & set(ENGINE)
        assert engine_imports <= set(ENGINE[:index]), module


def test_each_engine_module_imports_alone() -> None:
    for module in ENGINE:
        subprocess.run([sys.executable, "-c", f"import {module}"], cwd=BACKENDS, check=True)


#: The Python models: the only modules besides ``llm_triton`` that import Triton's Python-backend module.
MODELS = {"llm_api", "llm_engine", "llm_unary", "llm_bls", "llm_preprocessing", "llm_postprocessing"}


def _imports_triton(module: str) -> bool:
    for node in ast.walk(ast.parse((BACKENDS / f"{module}.py").read_text())):
        if isinstance(node, ast.Import) and any(a.name == "triton_python_backend_utils" for a in node.names):
            return True
    return False


def test_only_the_models_and_the_triton_helper_touch_triton() -> None:
    touching = {path.stem for path in BACKENDS.glob("llm_*.py") if _imports_triton(path.stem)}
    assert touching <= MODELS | {"llm_triton"}
    assert "llm_triton" in touching
    assert not _imports_triton("llm_preprocessing") and not _imports_triton("llm_postprocessing")


def test_the_request_helpers_stand_on_llm_common_alone() -> None:
    assert _imports("llm_triton") == {"llm_common"}
    assert _imports("llm_request") == {"llm_common"}
    subprocess.run([sys.executable, "-c", "import llm_request"], cwd=BACKENDS, check=True)
