"""The SQL state store (SQLAlchemy Core on SQLite or PostgreSQL): `store.SqlStore`."""
