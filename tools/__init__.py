"""Developer and user tools: the demos, tiny random models and their test-only loader nodes, the ComfyUI
server driver, the UI-workflow builder. Run from the pack folder: python -m tools.<name>."""
