"""Use cases: what the service does, independent of HTTP."""
