"""Unit-tier fixtures: a migrated SQLite database in a temp dir, no network.

Every installed plugin's protocol and models are loaded first, as in a management node, so
registries derived from the models (query targets, taggable types) are the same in every test.
"""

from __future__ import annotations

import pytest

from mn import plugins, query
from mn.db.engine import Database
from mn.db.migrate import upgrade

plugins.load("models")
query.refresh_targets()


@pytest.fixture
def db(tmp_path) -> Database:
    url = f"sqlite:///{tmp_path / 'unit.db'}"
    upgrade(url)
    d = Database(url)
    yield d
    d.dispose()
