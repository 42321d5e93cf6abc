"""SQLite workspace: schema and migrations, importers, queries. Never imports models or the UI."""
