"""Rules for batching: preferred sizes, priority levels, queue policies, sequence batching, cache."""

from __future__ import annotations

from typing import Any

from tritonkit.validate._controls import check_controls
from tritonkit.validate._report import ModelEntry, Sink

__all__ = ["check_batching"]

_DELAY = 1  # ModelQueuePolicy.DELAY
_CORRID = 3  # ModelSequenceBatching.Control.CONTROL_SEQUENCE_CORRID
_CORRID_TYPES = {"TYPE_UINT64", "TYPE_INT64", "TYPE_UINT32", "TYPE_INT32", "TYPE_STRING"}


def check_batching(entry: ModelEntry, sink: Sink) -> None:
    """Check the dynamic and sequence batchers and the response cache against Triton's rules."""
    config = entry.config
    assert config is not None
    if config.HasField("dynamic_batching"):
        _check_preferred(entry, sink, ("dynamic_batching", "preferred_batch_size"),
                         list(config.dynamic_batching.preferred_batch_size), "dynamic batching preferred size")
        _check_priorities(entry, sink, config.dynamic_batching)
        _check_ordering(entry, sink, config.dynamic_batching)
        _warn_dynamic(entry, sink, config.dynamic_batching)
    if config.HasField("sequence_batching"):
        _check_sequence(entry, sink, config.sequence_batching)
    if config.response_cache.enable and config.model_transaction_policy.decoupled:
        sink.error(entry, ("response_cache",),
                   f"Response Cache does not currently support model {entry.name} with 'decoupled' "
                   "transaction policy", hint="remove response_cache, or make the model not decoupled")
    if config.max_batch_size == 0 and (config.HasField("dynamic_batching") or
                                       config.HasField("sequence_batching")):
        which = "dynamic_batching" if config.HasField("dynamic_batching") else "sequence_batching"
        if entry.auto_complete:  # its set_max_batch_size may raise it at load
            entry.left_to_auto_complete.append("max_batch_size")
            return
        sink.warning(entry, (which,), f"{which} is set but max_batch_size is 0, so requests are never "
                                      "batched together", hint="set max_batch_size above 0, or remove it")


def _check_preferred(entry: ModelEntry, sink: Sink, where: tuple[str, ...], sizes: list[int],
                     what: str) -> None:
    limit = entry.config.max_batch_size if entry.config is not None else 0
    for index, size in enumerate(sizes):
        if size <= 0:
            sink.error(entry, (*where, index), f"{what} must be positive for {entry.name} (got {size})",
                       hint="remove it, or use a size from 1 to max_batch_size")
            return
        if size > limit:
            sink.error(entry, (*where, index),
                       f"{what} must be <= max batch size for {entry.name} (got {size} > {limit})",
                       hint=f"lower it to at most {limit}, or raise max_batch_size "
                            "(set max_batch_size explicitly: auto-complete fills it in too late)")
            return


def _check_priorities(entry: ModelEntry, sink: Sink, batching: Any) -> None:
    levels = batching.priority_levels
    if levels == 0:
        return
    if not 1 <= batching.default_priority_level <= levels:
        sink.error(entry, ("dynamic_batching", "default_priority_level"),
                   f"default priority level must be in range [1, {levels}] for {entry.name} "
                   f"(got {batching.default_priority_level})",
                   hint="set default_priority_level between 1 and priority_levels")
    for level in sorted(batching.priority_queue_policy):
        if not 1 <= level <= levels:
            sink.error(entry, ("dynamic_batching", "priority_queue_policy", str(level)),
                       f"priority queue policy must have priority level in range [1, {levels}] for "
                       f"{entry.name} (got {level})", hint="use a level between 1 and priority_levels")


def _check_ordering(entry: ModelEntry, sink: Sink, batching: Any) -> None:
    if not batching.preserve_ordering:
        return
    if batching.priority_levels > 1:
        sink.error(entry, ("dynamic_batching", "priority_levels"),
                   f"Only one priority level is allowed when 'preserve_ordering' is true for {entry.name}",
                   hint="drop preserve_ordering, or use at most 1 priority level")
    policies: list[tuple[tuple[str, ...], Any]] = [
        (("dynamic_batching", "default_queue_policy"), batching.default_queue_policy)]
    policies += [(("dynamic_batching", "priority_queue_policy", str(k)), v)
                 for k, v in sorted(batching.priority_queue_policy.items())]
    for where, policy in policies:
        if policy.default_timeout_microseconds != 0 and policy.timeout_action == _DELAY:
            sink.error(entry, where,
                       f"Queue policy can not have DELAY as timeout action when 'preserve_ordering' is "
                       f"true for {entry.name}", hint="use timeout_action: REJECT, or drop preserve_ordering")
            return


def _warn_dynamic(entry: ModelEntry, sink: Sink, batching: Any) -> None:
    if batching.preferred_batch_size and batching.max_queue_delay_microseconds == 0:
        sink.warning(entry, ("dynamic_batching", "preferred_batch_size"),
                     "preferred_batch_size is set with max_queue_delay_microseconds 0: the batcher never "
                     "waits to reach a preferred size",
                     hint="set max_queue_delay_microseconds (e.g. 100-2000), or drop preferred_batch_size")


def _check_sequence(entry: ModelEntry, sink: Sink, batching: Any) -> None:
    from tritonclient.grpc import model_config_pb2

    if entry.config is not None and entry.config.response_cache.enable:
        sink.error(entry, ("response_cache",),
                   f"Response Cache does not currently support model {entry.name} with sequence batching "
                   "scheduler", hint="remove response_cache")
    check_controls(entry, sink, batching)
    for index, control_input in enumerate(batching.control_input):
        for control in control_input.control:
            if control.kind == _CORRID:
                dtype = model_config_pb2.DataType.Name(control.data_type)
                if dtype not in _CORRID_TYPES:
                    sink.error(entry, ("sequence_batching", "control_input", index),
                               f"unexpected data type for control CONTROL_SEQUENCE_CORRID for {entry.name}. "
                               f"Allowed data types are TYPE_UINT64, TYPE_INT64, TYPE_UINT32, TYPE_INT32 "
                               f"and TYPE_STRING (got {dtype})", hint="use TYPE_UINT64")
    if batching.HasField("oldest"):
        _check_preferred(entry, sink, ("sequence_batching", "oldest", "preferred_batch_size"),
                         list(batching.oldest.preferred_batch_size),
                         "sequence batching preferred batch size")
    if batching.HasField("direct") and not 0.0 <= batching.direct.minimum_slot_utilization <= 1.0:
        sink.error(entry, ("sequence_batching", "direct", "minimum_slot_utilization"),
                   f"sequence batching minimum slot utilization must be in range (0.0, 1.0] for {entry.name}",
                   hint="use a value between 0 and 1")
