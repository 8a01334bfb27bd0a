"""Unit-tier fixtures: a migrated SQLite database in a temp dir, no network."""

from __future__ import annotations

import pytest

from mn.db.engine import Database
from mn.db.migrate import upgrade


@pytest.fixture
def db(tmp_path) -> Database:
    url = f"sqlite:///{tmp_path / 'unit.db'}"
    upgrade(url)
    d = Database(url)
    yield d
    d.dispose()
