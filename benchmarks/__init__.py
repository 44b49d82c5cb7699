"""Benchmarks of the Video-As-Prompt pack: python -m benchmarks --help (from the pack folder)."""
