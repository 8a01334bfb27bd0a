"""The workflow engine: a flow is a list of small steps, each with run and rollback.

Invariants:
- Steps run in order; `data` (a JSON-serialisable dict) carries what steps produce.
- When a step fails, every completed step is rolled back in reverse order; a rollback failure is
  logged and does not hide the original error, which is re-raised.
- If a journal is given, it is called before each step that has a rollback with (flow name, step
  names, data), so a restarted MN can rebuild the flow by name (FLOWS) and roll it back. A step
  declared `journaled=False` gets no entry of its own: the entry before the nearest journaled step
  ahead of it already names it (as possibly run), so everything its rollback needs must be in
  `data` by the time that entry is written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mn.errors import OPERATION_ERROR, ApiError

log = logging.getLogger(__name__)

StepFn = Callable[[Any, dict[str, Any]], None]
Journal = Callable[[str, list[str], dict[str, Any], "Step | None"], None]


@dataclass(frozen=True)
class Step:
    name: str
    run: StepFn
    rollback: StepFn | None = None
    # The step writes the journal entry that announces it inside its own (single) database
    # transaction (ApiContext.flow_grouped), so the entry and the step's effects commit together.
    journal_in_step: bool = False
    # False: no journal entry is written before this step (one write saved); the previous journaled
    # step's entry names it already, so recovery rolls it back whether or not it ran.
    journaled: bool = True


class FlowError(Exception):
    pass


class Flow:
    def __init__(self, name: str, steps: list[Step]):
        names = [s.name for s in steps]
        if len(set(names)) != len(names):
            raise FlowError(f"flow {name} has duplicate step names: {names}")
        self.name = name
        self.steps = steps

    def run(self, ctx: Any, data: dict[str, Any], journal: Journal | None = None,
            fault: Callable[[str], bool] | None = None) -> dict[str, Any]:
        """Run every step; on failure roll back the completed ones and re-raise.

        The journal is written before each step that has a rollback, with the steps started so
        far (the current one included), so recovery also rolls back a step that was in flight:
        rollbacks must tolerate a step that did not (fully) happen. `fault(flow:step)` returning True fails
        the flow right after that step ran (test instrumentation for rollback paths).
        """
        done: list[Step] = []
        for i, step in enumerate(self.steps):
            try:
                if journal is not None and step.rollback is not None and step.journaled:
                    # A step without rollback leaves recovery nothing to undo: no entry needed.
                    journal(self.name, [s.name for s in done] + [step.name] + self._covered(i), data, step)
                step.run(ctx, data)
                done.append(step)
                if fault is not None and fault(f"{self.name}:{step.name}"):
                    raise ApiError(OPERATION_ERROR, f"injected failure after step {step.name} of flow {self.name}")
            except BaseException as exc:
                log.info("flow %s: step %s failed (%s); rolling back %d steps",
                         self.name, step.name, exc, len(done))
                self._rollback(ctx, data, done)
                if journal is not None:
                    journal(self.name, [], data, None)
                raise
        if journal is not None:
            journal(self.name, [], data, None)
        return data

    def _covered(self, i: int) -> list[str]:
        """The unjournaled steps right after step i: its journal entry names them too."""
        out = []
        for step in self.steps[i + 1:]:
            if step.journaled:
                break
            out.append(step.name)
        return out

    def rollback_completed(self, ctx: Any, data: dict[str, Any], completed: list[str]) -> None:
        """Roll back the named completed steps (used by crash recovery)."""
        by_name = {s.name: s for s in self.steps}
        self._rollback(ctx, data, [by_name[n] for n in completed if n in by_name])

    def _rollback(self, ctx: Any, data: dict[str, Any], done: list[Step]) -> None:
        for step in reversed(done):
            if step.rollback is None:
                continue
            try:
                step.rollback(ctx, data)
            except Exception:
                log.exception("flow %s: rollback of step %s failed", self.name, step.name)


# Flow builders by name, so crash recovery can rebuild a journaled flow.
FLOWS: dict[str, Callable[[], Flow]] = {}


def register_flow(name: str) -> Callable[[Callable[[], Flow]], Callable[[], Flow]]:
    def deco(builder: Callable[[], Flow]) -> Callable[[], Flow]:
        FLOWS[name] = builder
        return builder

    return deco
