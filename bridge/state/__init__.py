"""The state store: links, cursors, errors and feed tokens over SQLAlchemy Core."""
