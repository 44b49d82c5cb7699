"""Scripts the tests run with ComfyUI's own Python: python -m tests.comfyui.<name> COMFYUI_ROOT BASE_DIR ..."""
