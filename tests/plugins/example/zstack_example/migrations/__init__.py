"""The example plugin's Alembic revisions (version table alembic_version_example)."""
