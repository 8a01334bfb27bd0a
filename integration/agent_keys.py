"""The agent master key of a test run: the simulator of the integration tier and every MN it
serves share it (as an MN and its embedded simulator share `<home>/agent.key`), and tests that
talk to agents directly sign with it (kvmagent/auth.py)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

from kvmagent import auth
from mn.agent import AgentClient

KEY_FILE = Path(tempfile.mkdtemp(prefix="zstack-test-keys-")) / "agent.key"
atexit.register(shutil.rmtree, KEY_FILE.parent, True)
MASTER = auth.create_key_file(KEY_FILE)
KEYS = auth.DerivedKeys(MASTER)


def signed_client(**kw: Any) -> AgentClient:
    """An AgentClient holding the test run's keys (as the MN's does)."""
    return AgentClient(keys=KEYS, **kw)


def write_agent_key(agent_url: str, path: Path) -> Path:
    """The key file of the agent the MN reaches at `agent_url` (for a real agent the test starts)."""
    auth.write_key_file(path, KEYS.key_for(agent_url))
    return path
