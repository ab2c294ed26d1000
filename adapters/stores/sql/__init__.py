"""The metadata stores on SQLAlchemy: an embedded SQLite file or MySQL/MariaDB, one module per kind of record."""
