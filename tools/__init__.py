"""Repository tooling (not part of the served application)."""
