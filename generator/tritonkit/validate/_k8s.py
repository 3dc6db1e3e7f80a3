"""Offline checks of a ``k8s/`` folder, each finding at file:line with what to change.

Core kinds go through kubernetes-validate in strict mode; custom resources through the JSON schemas
in ``tritonkit/schemas``.
"""

from __future__ import annotations

import importlib.resources
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from tritonkit.errors import Problem
from tritonkit.k8s_conventions import VERSIONS_ANNOTATION
from tritonkit.validate._report import Report

__all__ = ["CUSTOM_SCHEMAS", "validate_k8s_files", "validate_k8s_folder"]

#: (apiVersion, kind) of the custom resources ``k8s/`` uses -> their schema file (see schemas/README.md).
CUSTOM_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda.sh-v1alpha1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor-monitoring.coreos.com-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring.coreos.com-v1.json",
}
_INSTALL = "pip install 'tritonkit[k8s]'"


def _schema(name: str) -> dict[str, Any]:
    text = importlib.resources.files("tritonkit").joinpath("schemas", name).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _line(node: Optional[yaml.Node], path: Sequence[Union[str, int]]) -> Optional[int]:
    """The 1-based line of the deepest node along ``path`` that exists."""
    best = node.start_mark.line + 1 if node is not None else None
    for key in path:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            child = node.value[key]
        if child is None:
            break
        node, best = child, child.start_mark.line + 1
    return best


def _error_path(error: Any) -> list[Union[str, int]]:
    """Where a schema error is: for an unexpected key, the key itself, not the object holding it."""
    path: list[Union[str, int]] = list(error.absolute_path)
    if error.validator == "additionalProperties":
        unexpected = re.search(r"'([^']+)' (?:was|were) unexpected", error.message)
        if unexpected:
            path.append(unexpected.group(1))
    return path


def _documents(text: str) -> Iterator[tuple[Any, yaml.Node]]:
    for node in yaml.compose_all(text, Loader=yaml.SafeLoader):
        if node is None:
            continue
        yield yaml.safe_load(yaml.serialize(node)), node


def _custom_problems(doc: dict[str, Any], node: yaml.Node, path: str, schema_name: str) -> list[Problem]:
    import jsonschema

    validator = jsonschema.Draft7Validator(_schema(schema_name))
    problems = []
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(str(p) for p in error.absolute_path) or "(top)"
        problems.append(Problem(f"{doc.get('kind')} {where}: {error.message}", path=path,
                                line=_line(node, _error_path(error)),
                                hint=f"fix it to match {schema_name} (see tritonkit/schemas/README.md)"))
    return problems


def _core_problems(doc: dict[str, Any], node: yaml.Node, path: str, versions: Sequence[str]) -> list[Problem]:
    from kubernetes_validate import utils

    problems = []
    oldest = min(utils.all_versions(), key=utils.major_minor)
    for version in versions:
        if utils.major_minor(version) < utils.major_minor(oldest):
            problems.append(Problem(f"kubernetes-validate has no schemas for Kubernetes {version} (oldest: "
                                    f"{utils.major_minor(oldest)})", path=path,
                                    hint="target a newer version in deploy.kubernetes.versions"))
            continue
        try:
            utils.validate(doc, version, strict=True)
        except utils.ValidationError as exc:
            where = ".".join(str(p) for p in exc.absolute_path) or "(top)"
            problems.append(Problem(f"{doc.get('kind')} {where}: {exc.message} (Kubernetes {version}, strict)",
                                    path=path, line=_line(node, _error_path(exc)),
                                    hint="correct or remove the field, as the API server's schema says"))
        except utils.SchemaNotFoundError as exc:
            problems.append(Problem(f"{exc.message}", path=path, line=_line(node, ["apiVersion"]),
                                    hint=f"use an apiVersion that Kubernetes {version} serves"))
        except utils.VersionNotSupportedError as exc:
            problems.append(Problem(exc.message, path=path, hint=f"target an older version, or upgrade: {_INSTALL}"))
    return problems


def _document_problems(doc: Any, node: yaml.Node, path: str, versions: Sequence[str]) -> list[Problem]:
    if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
        return [Problem("is not a Kubernetes object (no apiVersion and kind)", path=path, line=_line(node, []),
                        hint="every document in k8s/ needs apiVersion and kind")]
    if doc["kind"] == "Kustomization":
        return []
    custom = CUSTOM_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
    if custom is not None:
        return _custom_problems(doc, node, path, custom)
    return _core_problems(doc, node, path, versions)


def _kustomization_problems(files: Mapping[str, bytes], root_name: str) -> list[Problem]:
    path = f"{root_name}/kustomization.yaml"
    if path not in files:
        return [Problem("is missing", path=path, hint="run `tritonkit generate` again; kubectl apply -k needs it")]
    body = yaml.safe_load(files[path]) or {}
    missing = [name for name in body.get("resources", []) if f"{root_name}/{name}" not in files]
    node = yaml.compose(files[path])
    return [Problem(f"lists resource {name!r}, which is not in {root_name}/", path=path,
                    line=_line(node, ["resources"]), hint="regenerate, or remove it from resources")
            for name in missing]


def _missing_tools() -> Optional[str]:
    try:
        import jsonschema  # noqa: F401  # only asked whether it is installed
        import kubernetes_validate  # noqa: F401  # only asked whether it is installed
    except ImportError as exc:
        return str(exc.name)
    return None


def validate_k8s_files(files: Mapping[str, bytes], versions: Sequence[str], *, root_name: str = "k8s") -> Report:
    """Validate the manifests of a ``k8s/`` folder held as ``{"k8s/deployment.yaml": b"..."}``.

    Without kubernetes-validate or jsonschema installed, the report holds one warning that says so.
    """
    report = Report()
    missing = _missing_tools()
    if missing is not None:
        report.warnings.append(Problem(f"{missing} is not installed, so {root_name}/ was not checked",
                                       path=root_name, severity="warning", hint=_INSTALL))
        return report
    report.errors += _kustomization_problems(files, root_name)
    for path in sorted(p for p in files if p.endswith((".yaml", ".yml"))):
        try:
            for doc, node in _documents(files[path].decode("utf-8")):
                report.errors += _document_problems(doc, node, path, versions)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            report.errors.append(Problem(f"is not valid YAML: {exc}", path=path,
                                         line=mark.line + 1 if mark is not None else None))
    return report


def _versions_from(folder: Path) -> list[str]:
    """The targeted versions ``generate`` recorded in kustomization.yaml, else the newest one known."""
    kustomization = folder / "kustomization.yaml"
    if kustomization.is_file():
        body = yaml.safe_load(kustomization.read_text(encoding="utf-8")) or {}
        recorded = body.get("metadata", {}).get("annotations", {}).get(VERSIONS_ANNOTATION)
        if recorded:
            return [v.strip() for v in str(recorded).split(",")]
    from kubernetes_validate import utils

    return [".".join(utils.latest_version().split(".")[:2])]


def validate_k8s_folder(folder: Union[str, Path], versions: Optional[Sequence[str]] = None) -> Report:
    """Validate a ``k8s/`` folder on disk, at ``versions`` or those ``generate`` recorded in it."""
    root = Path(folder)
    files = {f"{root.name}/{p.relative_to(root).as_posix()}": p.read_bytes()
             for p in sorted(root.rglob("*")) if p.is_file()}
    if _missing_tools() is None:
        versions = versions or _versions_from(root)
    return validate_k8s_files(files, versions or (), root_name=root.name)
