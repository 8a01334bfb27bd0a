from __future__ import annotations

import pytest

from mn.errors import ApiError
from mn.flow import Flow, Step


def _recorder(log: list[str], name: str, fail: bool = False):
    def run(ctx, data):
        log.append(f"run:{name}")
        data[name] = True
        if fail:
            raise ApiError("SYS.1006", f"{name} failed")

    def rollback(ctx, data):
        log.append(f"rollback:{name}")
        data.pop(name, None)

    return Step(name, run, rollback)


def test_flow_runs_steps_in_order():
    log: list[str] = []
    data = Flow("f", [_recorder(log, "a"), _recorder(log, "b")]).run(None, {})
    assert log == ["run:a", "run:b"]
    assert data == {"a": True, "b": True}


def test_failure_rolls_back_completed_steps_in_reverse_and_reraises():
    log: list[str] = []
    flow = Flow("f", [_recorder(log, "a"), _recorder(log, "b"), _recorder(log, "c", fail=True)])
    data: dict = {}
    with pytest.raises(ApiError, match="c failed"):
        flow.run(None, data)
    assert log == ["run:a", "run:b", "run:c", "rollback:b", "rollback:a"]
    assert data == {"c": True}  # the failed step is not rolled back; earlier ones are


def test_rollback_failure_does_not_hide_the_original_error():
    log: list[str] = []

    def bad_rollback(ctx, data):
        raise RuntimeError("rollback broke")

    flow = Flow("f", [Step("a", lambda c, d: log.append("a"), bad_rollback), _recorder(log, "b", fail=True)])
    with pytest.raises(ApiError, match="b failed"):
        flow.run(None, {})


def test_journal_records_started_steps_and_clears_at_end():
    entries = []
    undo = lambda c, d: None  # noqa: E731
    flow = Flow("f", [Step("a", lambda c, d: None, undo), Step("b", lambda c, d: None, undo),
                      Step("c", lambda c, d: None)])
    flow.run(None, {}, journal=lambda name, done, data, step: entries.append(list(done)))
    # No entry before "c": it has no rollback, so recovery would have nothing to undo for it.
    assert entries == [["a"], ["a", "b"], []]


def test_injected_fault_rolls_back_the_step_that_ran():
    log: list[str] = []
    flow = Flow("f", [_recorder(log, "a"), _recorder(log, "b")])
    with pytest.raises(ApiError, match="injected failure after step b"):
        flow.run(None, {}, fault={"f:b"}.__contains__)
    assert log == ["run:a", "run:b", "rollback:b", "rollback:a"]


def test_recovery_rolls_back_named_steps():
    log: list[str] = []
    flow = Flow("f", [_recorder(log, "a"), _recorder(log, "b"), _recorder(log, "c")])
    flow.rollback_completed(None, {}, ["a", "b"])
    assert log == ["rollback:b", "rollback:a"]


def test_duplicate_step_names_are_refused():
    with pytest.raises(Exception, match="duplicate"):
        Flow("f", [Step("a", lambda c, d: None), Step("a", lambda c, d: None)])
