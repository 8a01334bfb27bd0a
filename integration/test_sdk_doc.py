"""docs/sdk.md's end-to-end example, run as its reader runs it: `zstack-ctl start --simulator` (a
daemon MN with the demo zone), then the example script in its own process; what it prints must be
what the doc shows, up to UUIDs and addresses. The database follows ZSTACK_TEST_DB."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from integration.conftest import make_db_url
from integration.test_ctl_cli import CTL, _free_port, _run

DOC = Path(__file__).resolve().parents[1] / "docs" / "sdk.md"
MARKER = "<!-- integration/test_sdk_doc.py runs this block"


def _example() -> tuple[str, list[str]]:
    """(the example's code, the lines the doc says it prints)."""
    text = DOC.read_text()
    after = text[text.index(MARKER):]
    code = after.split("```python\n", 1)[1].split("\n```", 1)[0]
    printed = after.split("```console\n", 1)[1].split("\n```", 1)[0]
    return code, printed.splitlines()


def _normal(line: str) -> str:
    line = re.sub(r"\b[0-9a-f]{32}\b|\b[0-9a-f]{4}\.\.\.", "<uuid>", line)
    return re.sub(r"\b\d{1,3}(\.\d{1,3}){3}\b", "<ip>", line)


def test_the_sdk_example_prints_what_the_doc_shows(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZSTACK_")}
    env["HOME"] = str(tmp_path / "user")
    code, expected = _example()
    script = tmp_path / "example.py"
    script.write_text(code)
    home = tmp_path / "mn"
    port = _free_port()
    db_url, cleanup = make_db_url(home)
    ctl = [*CTL, "--home", str(home)]
    try:
        assert _run([*ctl, "configure", f"simulator_port={_free_port()}"], env).returncode == 0
        r = _run([*ctl, "start", "--simulator", "--port", str(port), "--db-url", db_url], env)
        assert r.returncode == 0, r.stdout + r.stderr
        r = subprocess.run([sys.executable, str(script), f"http://127.0.0.1:{port}"], env=env,
                           capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stdout + r.stderr
        assert [_normal(x) for x in r.stdout.splitlines()] == [_normal(x) for x in expected]
    finally:
        _run([*ctl, "stop"], env)
        cleanup()
