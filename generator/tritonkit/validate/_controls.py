"""Rules for sequence batching control inputs (START, END, READY, CORRID), as Triton's core checks them."""

from __future__ import annotations

from typing import Any, Optional

from tritonkit.validate._report import ModelEntry, Sink

__all__ = ["check_controls"]

_BOOLEAN_KINDS = {0: "CONTROL_SEQUENCE_START", 1: "CONTROL_SEQUENCE_READY", 2: "CONTROL_SEQUENCE_END"}
_TYPED_KINDS = {3: "CONTROL_SEQUENCE_CORRID"}
_LISTS = ("int32_false_true", "fp32_false_true", "bool_false_true")
_HINT = "give each control kind one tensor, with exactly one of int32_false_true / fp32_false_true / " \
        "bool_false_true holding [false, true] (CORRID takes data_type instead)"


def check_controls(entry: ModelEntry, sink: Sink, batching: Any) -> None:
    """Report the first control-input problem Triton would stop at, located at its control_input."""
    for kind, kind_name in {**_BOOLEAN_KINDS, **_TYPED_KINDS}.items():
        found = _first_problem(batching, kind, kind_name, entry.name)
        if found is not None:
            index, message = found
            sink.error(entry, ("sequence_batching", "control_input", index), message, hint=_HINT)
            return


def _first_problem(batching: Any, kind: int, kind_name: str, model: str) -> Optional[tuple[int, str]]:
    seen_tensors: set[str] = set()
    seen_control = False
    for index, control_input in enumerate(batching.control_input):
        if not control_input.name:
            return index, f"sequence batching control tensor must have a name for {model}"
        if control_input.name in seen_tensors:
            return index, (f"sequence batching control tensor '{control_input.name}' is specified for multiple "
                           f"control kinds for {model}")
        seen_tensors.add(control_input.name)
        for control in control_input.control:
            if control.kind != kind:
                continue
            if seen_control:
                return index, f"sequence batching specifies multiple {kind_name} tensors for {model}"
            seen_control = True
            message = _values_problem(control, kind, kind_name, model)
            if message:
                return index, message
    return None


def _values_problem(control: Any, kind: int, kind_name: str, model: str) -> Optional[str]:
    given = [name for name in _LISTS if len(getattr(control, name))]
    if kind in _TYPED_KINDS:
        if given:
            return (f"sequence batching must not specify either 'int32_false_true', 'fp32_false_true' or "
                    f"'bool_false_true' for {kind_name} for {model}")
        return None
    if not given:
        return (f"sequence batching must specify either 'int32_false_true', 'fp32_false_true' or "
                f"'bool_false_true' for {kind_name} for {model}")
    if len(given) > 1:
        return (f"sequence batching specifies more than one from 'int32_false_true', 'fp32_false_true' and "
                f"'bool_false_true' for {kind_name} for {model}")
    if len(getattr(control, given[0])) != 2:
        return f"sequence batching control '{given[0]}' must have exactly 2 entries for {kind_name} for {model}"
    return None
