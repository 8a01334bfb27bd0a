"""The eip plugin's Alembic revisions (version table alembic_version_eip)."""
