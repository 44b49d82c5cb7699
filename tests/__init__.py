"""The tests. Run from the pack folder: python -m pytest tests (or bash tests/run.sh)."""
