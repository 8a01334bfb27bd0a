"""What a handler may use: the MN's services, passed explicitly (no globals)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session

from mn.agent import AgentClient
from mn.config import MNConfig
from mn.db.engine import Database
from mn.flow import Flow, Step
from mn.globalconfig import GlobalConfigStore
from mn.jobs import JobRunner
from mn.models import ApiJob
from mn.secretbox import SecretBox

T = TypeVar("T")
_JOURNAL = update(ApiJob).where(ApiJob.uuid == bindparam("job")).values(flowState=bindparam("fs"))


ADMIN_ACCOUNT_UUID = "36c27e8ff05c4780bf6d2fa65700f22e"
"""ZStack's well-known uuid of the admin account (the SystemAdmin made at first start)."""


@dataclass(frozen=True)
class Caller:
    """Who makes an API call: an account, and the user of it when the session is a user's.

    `admin`: the account is a SystemAdmin (sees and may do everything). A user's calls are
    limited by its policies on top of what its account may do."""

    account_uuid: str
    admin: bool = False
    user_uuid: str | None = None


SYSTEM = Caller(ADMIN_ACCOUNT_UUID, admin=True)
"""The caller of work nobody asked for (background tasks, recovery): the admin account."""


class SessionStore(Protocol):
    """Sessions as the dispatcher checks them (mn.services.identity.SessionStore)."""

    def validate(self, svc: Services, session_uuid: str | None) -> Caller: ...


@dataclass
class Services:
    """The long-lived services of one MN process.

    `jobs` is set once the app factory made the job runner (before any request); `siblings` are
    the uuids of this machine's other MN processes; `flow_faults` names flow steps after which a
    flow fails (`flow:step`, tests of rollbacks); `secrets` seals and opens the passwords stored
    for SSH logins (mn.secretbox). A module that keeps per-process state of its own
    (a plugin's cache, the host tracker) gets it with component(), keyed by its class.
    """

    config: MNConfig
    db: Database
    agents: AgentClient
    gconf: GlobalConfigStore
    mn_uuid: str
    sessions: SessionStore | None = None
    secrets: SecretBox | None = None
    jobs: JobRunner | None = None
    siblings: frozenset[str] = frozenset()
    flow_faults: set[str] = field(default_factory=set)
    _components: dict[type, Any] = field(default_factory=dict, repr=False)

    def component(self, cls: type[T], make: Callable[[], T]) -> T:
        """The process's one instance of `cls`, made by `make` on first use."""
        found = self._components.get(cls)
        if found is None:
            found = self._components.setdefault(cls, make())
        return found

    def job_runner(self) -> JobRunner:
        if self.jobs is None:
            raise RuntimeError("this MN process has no job runner yet (mn.app.create_app makes it)")
        return self.jobs

    def secret_box(self) -> SecretBox:
        """Seals and opens stored passwords (the key file in the MN's home, mn.secretbox)."""
        if self.secrets is None:
            raise RuntimeError("this MN process has no secret box yet (mn.app.build_services makes it)")
        return self.secrets

    def session_store(self) -> SessionStore:
        if self.sessions is None:
            raise RuntimeError("this MN process has no session store yet (mn.app.build_services makes it)")
        return self.sessions


@dataclass
class ApiContext:
    """One API call: the services plus who is calling and which job runs it."""

    svc: Services
    caller: Caller = SYSTEM
    session_uuid: str | None = None
    job_uuid: str | None = None
    pending_journal: tuple[str, list[str], dict[str, Any]] | None = None

    @property
    def account_uuid(self) -> str:
        """The account the call acts for: the owner of what it creates."""
        return self.caller.account_uuid

    @property
    def db(self) -> Database:
        return self.svc.db

    @property
    def agents(self) -> AgentClient:
        return self.svc.agents

    @property
    def gconf(self) -> GlobalConfigStore:
        return self.svc.gconf

    @property
    def config(self) -> MNConfig:
        return self.svc.config

    def journal(self, flow: str, done: list[str], data: dict[str, Any], step: Step | None = None) -> None:
        """Persist a flow's progress on the job row (crash recovery reads it back).

        The final "nothing in flight" entry is not written: the job's end (JobRunner.finish)
        clears flowState in the same update that records the result. For a step that journals
        in its own transaction, the entry is written by that step's flow_grouped(), at the end of its
        transaction, so it carries what the step put in `data` and commits with its effects.
        """
        if self.job_uuid is None or not done:
            self.pending_journal = None
            return
        if step is not None and step.journal_in_step:
            self.pending_journal = (flow, list(done), data)
            return
        state = json.dumps({"flow": flow, "done": done, "data": data})
        with self.db.tx() as s:
            s.connection().execute(_JOURNAL, {"job": self.job_uuid, "fs": state})

    def flow_grouped(self, fn: Callable[[Session], T]) -> T:
        """The write of a step that journals in its own transaction (Step.journal_in_step):
        fn(session), then the step's pending journal entry, in one savepoint of a group-committed
        transaction (Database.grouped), so the entry commits with the step's effects or not at all."""
        pending, self.pending_journal = self.pending_journal, None

        def run(s: Session) -> T:
            out = fn(s)
            if pending is not None:
                flow, done, data = pending
                state = json.dumps({"flow": flow, "done": done, "data": data})
                s.connection().execute(_JOURNAL, {"job": self.job_uuid, "fs": state})
            return out

        return self.db.grouped(run)

    def run_flow(self, flow: Flow, data: dict[str, Any]) -> dict[str, Any]:
        faults = self.svc.flow_faults
        return flow.run(self, data, journal=self.journal if self.job_uuid else None,
                        fault=faults.__contains__ if faults else None)
