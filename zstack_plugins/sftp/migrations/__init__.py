"""The sftp plugin's Alembic revisions (version table alembic_version_sftp)."""
