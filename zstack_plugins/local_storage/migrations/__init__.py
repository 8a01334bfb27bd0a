"""The local_storage plugin's Alembic revisions (version table alembic_version_local_storage)."""
