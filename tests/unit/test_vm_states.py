"""The VM state machine: every operation starts from stable states and passes through its own
transitional state, which no operation may start from."""

from __future__ import annotations

from mn.allocator.host import HOLDING_STATES
from mn.services.vm_common import (
    CREATED,
    DESTROYED,
    OPERATIONS,
    PAUSED,
    RUNNING,
    STOPPED,
    TRANSITIONAL,
    UNKNOWN,
)

STABLE = {CREATED, RUNNING, STOPPED, PAUSED, DESTROYED, UNKNOWN}


def test_operations_start_only_from_stable_states():
    for op, (allowed, transitional) in OPERATIONS.items():
        assert set(allowed) <= STABLE, op
        assert transitional in TRANSITIONAL, op


def test_each_transitional_state_belongs_to_one_operation():
    seen = [t for _, t in OPERATIONS.values()]
    assert len(seen) == len(set(seen)) == len(TRANSITIONAL)


def test_stable_states_that_hold_host_capacity():
    # A VM on a host holds its CPU and memory; a VM off any host holds none.
    assert {RUNNING, PAUSED, UNKNOWN} <= set(HOLDING_STATES)
    assert not {CREATED, STOPPED, DESTROYED} & set(HOLDING_STATES)
    assert set(TRANSITIONAL) - {"Expunging"} <= set(HOLDING_STATES) | {"Starting"}


def test_destroyed_vms_can_only_be_expunged_or_recovered():
    from_destroyed = [op for op, (allowed, _) in OPERATIONS.items() if DESTROYED in allowed]
    assert from_destroyed == ["expunge"]
