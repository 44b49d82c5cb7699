"""Batch runner: many VAP jobs through a running ComfyUI's HTTP API (python -m vap_batch --help).
Standard library plus av (a target video's first frame, the posters) and Jinja2 (the contact sheet)."""
