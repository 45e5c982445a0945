"""The engine's version (the collection's, as galaxy.yml states it)."""

__version__ = "1.0.0"
