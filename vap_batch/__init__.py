"""Batch runner: many VAP jobs through a running ComfyUI's HTTP API (python -m vap_batch --help).
aiohttp (the client), tqdm (progress bars), av (a target video's first frame, the posters) and Jinja2
(the contact sheet); no ComfyUI import."""
