"""PostgreSQL, the system of record (DESIGN.md, "Where records live").

Infrastructure beside `storage`: it may import `sparc_video.core` only.

- `schema`: the tables as SQLAlchemy Core `MetaData` (the durable truth; no ORM).
- `migrations`: versioned schema changes (alembic), applied by `migrate()` and `sparc-video
  migrate`; `current_revision()` says where a database stands.
- `pool`: `open_database(url)`, an asyncpg pool with a health `check()`, pool metrics and
  slow-query logging.
- `embedded`: `ensure_database(url, data_dir)`, the configured PostgreSQL when it answers, else
  an embedded PostgreSQL 16 (pgserver) with its data under `data_dir`.
- `urls`: one connection string, in the forms asyncpg and SQLAlchemy each want.
"""
