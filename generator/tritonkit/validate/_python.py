"""Rules for Python-backend models' model.py, in every version the policy loads: read with ``ast``, never imported.

The Python backend's stub imports ``model.py`` and instantiates ``TritonPythonModel``
(python_backend ``src/pb_stub.cc``); a file that does not compile, or that defines no such class,
fails the model at load time. A name the file uses but never defines (pyflakes' ``UndefinedName``,
the analysis a linter makes) raises NameError when its line runs: an error where the line runs when
the model loads (module and class bodies, the top level of ``initialize``/``auto_complete_config``/
``__init__``), a warning elsewhere (``execute``, a branch), where it fails only if that line runs.

A class with ``auto_complete_config`` completes the config when the model loads, before Triton
validates it (python_backend ``triton_python_backend_utils.py`` ``ModelConfig``: ``add_input``,
``add_output``, ``set_max_batch_size``, ``set_dynamic_batching``, ``set_model_transaction_policy``).
Where the method's calls can be read without running it (literal dicts and numbers, directly, through
local names, or in ``for`` loops over literal lists, as python_backend's and the tutorials' examples
write them), they are applied to the config the other rules check, with python_backend's own errors
for a conflict; otherwise ``ModelEntry.auto_complete`` is set, and the fields the method may fill are
not reported missing, which one warning says.
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass, field
from typing import Any, Optional

from tritonkit.errors import Problem
from tritonkit.triton import default_model_file
from tritonkit.validate._report import ModelEntry, Sink
from tritonkit.validate._view import RepositoryView

__all__ = ["check_python", "report_completed_at_load"]

_CLASS = "TritonPythonModel"
_AUTO_COMPLETE = "auto_complete_config"
_SETTERS = {"add_input", "add_output", "set_max_batch_size", "set_dynamic_batching", "set_model_transaction_policy"}
_UNKNOWN = object()


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
        _check_names(tree, path, entry, sink)
        found = _find_class(tree)
        if found is None and not _imports_star(tree):
            sink.add(Problem(f"{filename} of version {version} of model '{entry.name}' defines no '{_CLASS}': "
                             f"the Python backend fails with AttributeError: module '{version}.model' has no "
                             f"attribute '{_CLASS}'", path=path, line=1, col=1, model=entry.name,
                             hint=f"define `class {_CLASS}:` with initialize/execute (or import it by that name)"))
        elif isinstance(found, ast.ClassDef) and version == max(entry.available_versions()):
            method = next((node for node in found.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                           and node.name == _AUTO_COMPLETE), None)
            if method is not None:
                _complete(entry, sink, _read_completion(method), path)


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


@dataclass
class _Completion:
    """What an ``auto_complete_config`` does, read statically: each call with its line, or not ``known``."""

    calls: list[tuple[str, Any, int]] = field(default_factory=list)
    known: bool = True
    line: int = 1


def _read_completion(method: Any) -> _Completion:
    found = _Completion(line=method.lineno)
    params = [a.arg for a in method.args.args]
    config_name = params[1] if params and params[0] in ("self", "cls") and len(params) > 1 else \
        (params[0] if params else "")
    _walk(method.body, {}, config_name, found)
    return found


def _walk(body: list[ast.stmt], env: dict[str, Any], config_name: str, found: _Completion) -> None:
    for statement in body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            found.known = False  # a nested function may do anything with the config
        elif isinstance(statement, ast.For):
            _walk_for(statement, env, config_name, found)
        elif isinstance(statement, (ast.If, ast.While, ast.With, ast.Try)):
            # both branches of an if are taken as run: examples guard add_input with "not already there"
            _calls_in([getattr(statement, "test", None), *getattr(statement, "items", [])], env, config_name, found)
            for part in ("body", "orelse", "finalbody"):
                _walk(getattr(statement, part, []), env, config_name, found)
            for handler in getattr(statement, "handlers", []):
                _walk(handler.body, env, config_name, found)
        else:
            _calls_in([statement], env, config_name, found)
            if isinstance(statement, ast.Assign):
                value = _value(statement.value, env)
                for target in statement.targets:
                    env.update({name: value for name in _names(target)})


def _walk_for(statement: ast.For, env: dict[str, Any], config_name: str, found: _Completion) -> None:
    """Walk a loop's body once per item of a literal list, or once with the loop variable unknown."""
    items = _value(statement.iter, env)
    if isinstance(statement.target, ast.Name) and isinstance(items, (list, tuple)):
        for item in items:
            _walk(statement.body, {**env, statement.target.id: item}, config_name, found)
    else:
        _walk(statement.body, {**env, **_names(statement.target)}, config_name, found)
    _walk(statement.orelse, env, config_name, found)


def _names(target: ast.AST) -> dict[str, Any]:
    return {node.id: _UNKNOWN for node in ast.walk(target) if isinstance(node, ast.Name)}


def _calls_in(nodes: list[Any], env: dict[str, Any], config_name: str, found: _Completion) -> None:
    for root in nodes:
        if root is None:
            continue
        for node in ast.walk(root):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == config_name \
                    and node.attr not in _SETTERS | {"as_dict"}:
                found.known = False
            if not isinstance(node, ast.Call):
                continue
            if any(isinstance(arg, ast.Name) and arg.id == config_name for arg in node.args):
                found.known = False  # handed to other code
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in _SETTERS and \
                    isinstance(func.value, ast.Name) and func.value.id == config_name:
                args = [_value(arg, env) for arg in node.args]
                if any(arg is _UNKNOWN for arg in args) or node.keywords:
                    found.known = False
                else:
                    found.calls.append((func.attr, args[0] if args else None, node.lineno))


def _value(node: Any, env: dict[str, Any]) -> Any:
    """The value of a literal expression, resolving local names; ``_UNKNOWN`` for anything else."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env.get(node.id, _UNKNOWN)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _value(node.operand, env)
        return -inner if isinstance(inner, (int, float)) and not isinstance(inner, bool) else _UNKNOWN
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_value(item, env) for item in node.elts]
        return _UNKNOWN if any(item is _UNKNOWN for item in items) else items
    if isinstance(node, ast.Dict):
        keys = [_value(key, env) if key is not None else _UNKNOWN for key in node.keys]
        values = [_value(value, env) for value in node.values]
        if any(item is _UNKNOWN for item in [*keys, *values]):
            return _UNKNOWN
        return dict(zip(keys, values))
    return _UNKNOWN


def _complete(entry: ModelEntry, sink: Sink, completion: _Completion, path: str) -> None:
    """Apply a readable completion to ``entry.config`` as python_backend does.

    An unreadable one (or a model without config.pbtxt) marks the model as completing its config at load.
    """
    config = entry.config
    entry.auto_complete_at = (path, completion.line)
    if config is None or not completion.known:
        entry.auto_complete = True
        return
    for method, arg, line in completion.calls:
        message = _apply(config, entry.name, method, arg)
        if message is _UNKNOWN:
            entry.auto_complete = True
            return
        if message:
            sink.add(Problem(f"auto_complete_config of model '{entry.name}' fails when the model loads: {message}",
                             path=path, line=line, col=1, model=entry.name,
                             hint="make the config.pbtxt agree with what auto_complete_config sets, or leave the "
                                  "field to it"))
            return


def _apply(config: Any, model: str, method: str, arg: Any) -> Any:
    """Apply one call to ``config``; return python_backend's ValueError text, "" when fine, or _UNKNOWN."""
    if method in ("add_input", "add_output"):
        return _apply_tensor(config, model, "input" if method == "add_input" else "output", arg)
    if method == "set_max_batch_size":
        if not isinstance(arg, int) or isinstance(arg, bool):
            return _UNKNOWN
        if config.max_batch_size > arg:
            return (f"configuration specified max_batch_size {config.max_batch_size}, but in auto-complete-config "
                    f"function for model '{model}' specified max_batch_size {arg}")
        config.max_batch_size = arg
        return ""
    if method == "set_dynamic_batching":
        scheduler = config.WhichOneof("scheduling_choice")
        if scheduler in ("sequence_batching", "ensemble_scheduling"):
            return (f"Configuration specified scheduling_choice as '{scheduler}', but auto-complete-config "
                    f"function for model '{model}' tries to set scheduling_choice as 'dynamic_batching'")
        config.dynamic_batching.SetInParent()
        return ""
    if method == "set_model_transaction_policy":
        if not isinstance(arg, dict) or not isinstance(arg.get("decoupled", False), bool):
            return _UNKNOWN
        policy = config.model_transaction_policy
        if "decoupled" in arg and config.HasField("model_transaction_policy") and \
                policy.decoupled != arg["decoupled"]:
            return (f"trying to change decoupled property in auto-complete-config for model '{model}', which "
                    f"is already set to '{policy.decoupled}'.")
        policy.decoupled = arg.get("decoupled", policy.decoupled)
        return ""
    return _UNKNOWN


def _apply_tensor(config: Any, model: str, kind: str, arg: Any) -> Any:
    """Apply ``add_input``/``add_output`` as python_backend's ModelConfig does: add, or fill type and dims."""
    from tritonclient.grpc import model_config_pb2

    if not isinstance(arg, dict) or not isinstance(arg.get("name"), str) or \
            arg.get("data_type") not in model_config_pb2.DataType.DESCRIPTOR.values_by_name or \
            not isinstance(arg.get("dims"), list) or not all(isinstance(d, int) for d in arg["dims"]):
        return _UNKNOWN
    dtype = model_config_pb2.DataType.Value(arg["data_type"])
    for tensor in getattr(config, kind):
        if tensor.name != arg["name"]:
            continue
        if tensor.data_type not in (0, dtype):
            return (f"unable to load model '{model}', configuration expects datatype "
                    f"{model_config_pb2.DataType.Name(tensor.data_type)} for {kind} '{tensor.name}', model provides "
                    f"{arg['data_type']}")
        if tensor.dims and list(tensor.dims) != arg["dims"]:
            return (f"model '{model}', tensor '{tensor.name}': the model expects dims {arg['dims']} but the model "
                    f"configuration specifies dims {list(tensor.dims)}")
        break
    else:
        tensor = getattr(config, kind).add(name=arg["name"])
    tensor.data_type = dtype
    tensor.dims[:] = arg["dims"]
    if kind == "input" and isinstance(arg.get("optional"), bool):
        tensor.optional = arg["optional"]
    return ""


def report_completed_at_load(entry: ModelEntry, sink: Sink) -> None:
    """Say once that what a model's auto_complete_config may fill was not reported missing."""
    if not entry.auto_complete or not entry.left_to_auto_complete or entry.auto_complete_at is None:
        return
    path, line = entry.auto_complete_at
    left = ", ".join(dict.fromkeys(entry.left_to_auto_complete))
    sink.add(Problem(f"model.py's auto_complete_config completes the config of model '{entry.name}' when it "
                     f"loads, in a way that cannot be read without running it: {left} left to it, not "
                     "reported here", path=path, line=line, col=1, model=entry.name, severity="warning",
                     hint="declare them in config.pbtxt so that they can be checked before the server starts"))


#: TritonPythonModel's methods the stub calls when the model loads.
_LOAD_METHODS = {"__init__", "initialize", _AUTO_COMPLETE}


def _check_names(tree: ast.Module, path: str, entry: ModelEntry, sink: Sink) -> None:
    """Report each name model.py uses but never defines, at file:line:col."""
    from pyflakes import checker, messages

    found = [m for m in checker.Checker(tree, filename=path).messages if isinstance(m, messages.UndefinedName)]
    if not found:
        return
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    names = {(n.lineno, n.col_offset, n.id): n for n in ast.walk(tree) if isinstance(n, ast.Name)}
    filename = path.rsplit("/", 1)[-1]
    defined = _defined_names(tree)
    for message in sorted(found, key=lambda m: (m.lineno, m.col)):
        name = str(message.message_args[0])
        node = names.get((message.lineno, message.col, name))
        where = _enclosing(node, parents) if node is not None else ""
        at_load = node is not None and _runs_at_load(node, parents)
        text = f"{filename} uses '{name}', which it never defines"
        close = difflib.get_close_matches(name, defined, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"import or define '{name}'"
        if at_load:
            sink.add(Problem(f"{text}: the Python backend fails to load model '{entry.name}' with NameError: name "
                             f"'{name}' is not defined{where}", path=path, line=message.lineno,
                             col=message.col + 1, model=entry.name, hint=hint))
        else:
            sink.add(Problem(f"{text}: NameError: name '{name}' is not defined when this line runs{where}",
                             path=path, line=message.lineno, col=message.col + 1, model=entry.name,
                             severity="warning", hint=hint))


def _defined_names(tree: ast.Module) -> list[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return sorted(names)


def _enclosing(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> str:
    scopes = []
    current: Optional[ast.AST] = node
    while current is not None:
        if isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            scopes.append(current.name)
        current = parents.get(current)
    return f" (in {'.'.join(reversed(scopes))})" if scopes else ""


def _runs_at_load(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether ``node`` runs whenever the model loads: no branch, loop body or other function on its way up."""
    child, parent = node, parents.get(node)
    while parent is not None:
        if _may_skip(child, parent, parents):
            return False
        child, parent = parent, parents.get(parent)
    return True


def _may_skip(child: ast.AST, parent: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether ``parent`` may run without running ``child`` (or never run it when the model loads)."""
    if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef)):
        owner = parents.get(parent)
        loads = parent.name in _LOAD_METHODS and isinstance(owner, ast.ClassDef) and owner.name == _CLASS and \
            isinstance(parents.get(owner), ast.Module)
        return child in parent.body and not loads
    if isinstance(parent, (ast.If, ast.IfExp, ast.While)):
        return child is not parent.test
    if isinstance(parent, (ast.For, ast.AsyncFor, ast.comprehension)):
        return child is not parent.iter
    if isinstance(parent, ast.Try):
        return child not in parent.body and child not in parent.finalbody
    if isinstance(parent, ast.BoolOp):
        return child is not parent.values[0]
    return isinstance(parent, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)) or \
        type(parent).__name__ in ("Match", "match_case")
