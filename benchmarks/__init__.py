"""Benchmarks of the Video-As-Prompt pack: python -m benchmarks --help."""
import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [p for p in (str(_TESTS), str(_TESTS / "comfyui")) if p not in sys.path]  # helpers, harness
