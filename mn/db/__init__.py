"""Database access: engine construction, the declarative base, and session helpers."""
