"""The schemathesis run's configuration and hooks (tests/integration/test_schema_fuzzing.py)."""
