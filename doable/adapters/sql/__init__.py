"""The SQL adapter family: SQLModel on SQLAlchemy async; SQLite (aiosqlite) or PostgreSQL (asyncpg)."""
