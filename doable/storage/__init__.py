"""Storage adapters: SQL (SQLite, PostgreSQL) and Dapr state."""
