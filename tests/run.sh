#!/usr/bin/env bash
# The test command: makes the pack's test environment once (.venv: CPU torch, the requirements,
# pytest), then runs every test. The ComfyUI tests use the ComfyUI it finds ($COMFYUI_PATH, the
# ComfyUI holding this pack, ~/ComfyUI) and skip, saying why, where there is none.
#   bash tests/run.sh [pytest options]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import torch, pytest, pathspec, av, safetensors, aiohttp, tqdm" 2> /dev/null; then
  echo "making the test environment in .venv (CPU torch, requirements.txt, pytest, pathspec) ..."
  python3 -m venv .venv
  # CPU torch, pinned: an unpinned torch (or torchvision) would pull gigabytes of CUDA wheels.
  .venv/bin/pip install --quiet torch==2.13.0
  .venv/bin/pip install --quiet -r requirements.txt pytest pathspec==1.1.1
fi
exec .venv/bin/python -m pytest tests -q -rs "$@"
