"""Unit-tier fixtures: a migrated SQLite database in a temp dir, no network.

Every installed plugin's protocol and models are loaded first, as in a management node, so
registries derived from the models (query targets, taggable types) are the same in every test.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mn import plugins, query
from mn.db.engine import Database
from mn.db.migrate import upgrade
from mn.services.identity import ensure_admin

plugins.load("models")
query.refresh_targets()


@pytest.fixture
def db(tmp_path) -> Database:
    url = f"sqlite:///{tmp_path / 'unit.db'}"
    upgrade(url)
    d = Database(url)
    ensure_admin(SimpleNamespace(db=d))  # the owner of what tests create, as in a running MN
    yield d
    d.dispose()
