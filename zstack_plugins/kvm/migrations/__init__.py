"""The kvm plugin's Alembic revisions (version table alembic_version_kvm)."""
