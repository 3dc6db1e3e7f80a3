"""Rules for Python-backend models' model.py, in every version the policy loads: read with ``ast``, never imported.

The Python backend's stub imports ``model.py`` and instantiates ``TritonPythonModel``
(python_backend ``src/pb_stub.cc``); a file that does not compile, or that defines no such class,
fails the model at load time. A class with ``auto_complete_config`` may fill the config's
``max_batch_size``, inputs and outputs itself, which :class:`ModelEntry` records for other rules.
"""

from __future__ import annotations

import ast
from typing import Optional

from tritonkit.errors import Problem
from tritonkit.triton import default_model_file
from tritonkit.validate._report import ModelEntry, Sink
from tritonkit.validate._view import RepositoryView

__all__ = ["check_python"]

_CLASS = "TritonPythonModel"
_AUTO_COMPLETE = "auto_complete_config"


def check_python(view: RepositoryView, entry: ModelEntry, sink: Sink, backend: str) -> None:
    """Check model.py of every loaded version of a Python model; set ``entry.auto_complete``."""
    if backend != "python":
        return
    config = entry.config
    filename = default_model_file("python", configured=config.default_model_filename if config else "")
    if filename is None or not filename.endswith(".py"):
        return  # an archived execution environment or a custom file: nothing to read statically
    for version in entry.available_versions():
        data = view.version_file(entry.name, str(version), filename)
        if data is None:
            continue  # a missing file is the model-file rule's to report
        path = f"{entry.folder}/{version}/{filename}"
        tree = _parse(data, path, entry, sink)
        if tree is None:
            continue
        found = _find_class(tree)
        if found is None and not _imports_star(tree):
            sink.add(Problem(f"{filename} of version {version} of model '{entry.name}' defines no '{_CLASS}': "
                             f"the Python backend fails with AttributeError: module '{version}.model' has no "
                             f"attribute '{_CLASS}'", path=path, line=1, col=1, model=entry.name,
                             hint=f"define `class {_CLASS}:` with initialize/execute (or import it by that name)"))
        elif isinstance(found, ast.ClassDef) and version == max(entry.available_versions()):
            entry.auto_complete = any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and
                                      node.name == _AUTO_COMPLETE for node in found.body)


def _parse(data: bytes, path: str, entry: ModelEntry, sink: Sink) -> Optional[ast.Module]:
    name = path.rsplit("/", 1)[-1]
    try:
        return ast.parse(data, filename=path)
    except SyntaxError as exc:
        # The stub's own words: "SyntaxError: expected ':' (model.py, line 16)".
        sink.add(Problem(f"{name} does not compile, so the Python backend cannot import it: "
                         f"{type(exc).__name__}: {exc.msg} ({name}, line {exc.lineno})", path=path,
                         line=exc.lineno or 1, col=exc.offset or 1, model=entry.name,
                         hint="fix the syntax (python -m py_compile shows the same error)"))
    except ValueError as exc:  # null bytes
        sink.add(Problem(f"{name} is not Python source: {exc}", path=path, line=1, col=1,
                         model=entry.name, hint="put the model's Python source in this file"))
    return None


def _find_class(tree: ast.Module) -> Optional[ast.AST]:
    """The top-level statement that binds ``TritonPythonModel``: a class, an assignment or an import."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == _CLASS:
            return node
        if isinstance(node, (ast.Import, ast.ImportFrom)) and \
                any((alias.asname or alias.name) == _CLASS for alias in node.names):
            return node
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == _CLASS for t in node.targets):
            return node
    return None


def _imports_star(tree: ast.Module) -> bool:
    return any(isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names) for node in tree.body)
