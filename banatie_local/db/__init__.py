"""SQLite through Peewee: models, connection pragmas, recorded migrations."""
