"""install.sh -D: drop every table of the database at $ZSTACK_DB_URL (the MN is stopped).

SQLite: the file and its WAL files are removed. PostgreSQL: everything the connecting user owns
in that database (tables, sequences, types). MariaDB: every table, foreign keys unchecked.
"""

import os
from pathlib import Path

from sqlalchemy import MetaData, create_engine, text

url = os.environ["ZSTACK_DB_URL"]
if url.startswith("sqlite:///"):
    db = Path(url[len("sqlite:///"):])
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        path.unlink(missing_ok=True)
else:
    engine = create_engine(url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("DROP OWNED BY CURRENT_USER"))
        else:
            conn.execute(text("SET FOREIGN_KEY_CHECKS = 0"))
            meta = MetaData()
            meta.reflect(conn)
            meta.drop_all(conn)
    engine.dispose()
print(f"dropped the tables of {url.split('@')[-1]}")
