"""Commands a user or maintainer runs from the pack folder: the demos, the UI-workflow builder
(python -m tools.<name>) and setup_env.sh (a CPU environment for a ComfyUI checkout)."""
