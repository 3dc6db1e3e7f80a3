"""Turn an upstream CustomResourceDefinition into the strict JSON schema stored beside this file.

Usage: ``python generator/tritonkit/schemas/convert_crd.py CRD.yaml VERSION OUT.json``. The served version's
``openAPIV3Schema`` is taken as it is, and every object that lists ``properties`` without saying
what else it allows gets ``additionalProperties: false`` (the API server prunes unknown fields
silently; a strict check reports them instead, as kubernetes-validate's ``--strict`` does for core kinds).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml


def _strict(node: Any) -> Any:
    if isinstance(node, dict):
        out = {key: _strict(value) for key, value in node.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(item) for item in node]
    return node


def convert(crd_path: Path, version: str) -> dict[str, Any]:
    """The strict schema of ``version`` of the CRD at ``crd_path``, with apiVersion and kind pinned."""
    crd = yaml.safe_load(crd_path.read_text(encoding="utf-8"))
    served = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    schema: dict[str, Any] = _strict(served["schema"]["openAPIV3Schema"])
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    schema["properties"]["apiVersion"] = {"type": "string", "enum": [f"{group}/{version}"]}
    schema["properties"]["kind"] = {"type": "string", "enum": [kind]}
    schema["properties"]["metadata"] = {"type": "object"}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata", "spec"})
    return schema


if __name__ == "__main__":
    source, version, target = sys.argv[1:4]
    Path(target).write_text(json.dumps(convert(Path(source), version), indent=1, sort_keys=True) + "\n",
                            encoding="utf-8")
