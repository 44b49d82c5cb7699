"""Test-only custom node: makes this ComfyUI look older than the pack's floor (see prestartup_script.py)."""
NODE_CLASS_MAPPINGS = {}
