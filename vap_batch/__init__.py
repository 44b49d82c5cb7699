"""Batch runner: many VAP jobs through a running ComfyUI's HTTP API (python -m vap_batch --help).
Standard library only, plus av to take the first frame of a target video."""
