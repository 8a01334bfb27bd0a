#!/usr/bin/env bash
# Regenerate the initial migration (0001) from the models. Only valid until 0001 has landed on
# main; after that every schema change is a new migration (alembic revision --autogenerate).
set -euo pipefail
cd "$(dirname "$0")/.."
db=$(mktemp -u /tmp/zstack-regen-XXXX.db)
rm -f mn/migrations/versions/0001_initial_schema.py
.venv/bin/python - "$db" <<'PY'
import sys
from alembic import command
from mn.db.migrate import alembic_config
command.revision(alembic_config(f"sqlite:///{sys.argv[1]}"), message="initial schema", autogenerate=True,
                 rev_id="0001")
PY
f=mn/migrations/versions/0001_initial_schema.py
sed -i "s/sa.text('(CURRENT_TIMESTAMP)')/sa.func.now()/g; /### commands auto generated/d; /### end Alembic commands/d; s/^Create Date: .*/Create Date: 2026-11-23/" "$f"
sed -i "s/^Revises: $/Revises:/" "$f"
rm -f "$db"
echo "regenerated $f"
