#!/usr/bin/env bash
# Makes a CPU-only Python environment inside a ComfyUI checkout (COMFYUI/.venv) for the
# integration tests. Run by hand once: bash tools/setup_env.sh [COMFYUI_PATH]
set -euo pipefail
COMFY="${1:-${COMFYUI_PATH:-$HOME/ComfyUI}}"
[ -f "$COMFY/main.py" ] || { echo "no ComfyUI at $COMFY (give its path)" >&2; exit 2; }
PY="${PYTHON:-python3}"
"$PY" -m venv "$COMFY/.venv"
VPY="$COMFY/.venv/bin/python"
"$VPY" -m pip install -q --upgrade pip
# CPU torch; any unpinned torch/torchvision would pull CUDA wheels.
echo "torch==2.13.0" > "$COMFY/.venv/constraints.txt"
"$VPY" -m pip install -q torch==2.13.0 torchvision==0.28.0 -c "$COMFY/.venv/constraints.txt"
grep -v -E '^(torch|torchvision|torchaudio)\s*$' "$COMFY/requirements.txt" > "$COMFY/.venv/requirements-nottorch.txt"
"$VPY" -m pip install -q -r "$COMFY/.venv/requirements-nottorch.txt" requests -c "$COMFY/.venv/constraints.txt"
# PyPI's torchvision is a CUDA build whose compiled ops cannot load with CPU torch; declaring
# their schemas lets its pure-Python parts import (ComfyUI imports torchvision at start-up).
SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cp "$(dirname "$0")/torchvision_cpu_shim.py" "$SITE/torchvision_cpu_shim.py"
echo "import torchvision_cpu_shim" > "$SITE/torchvision_cpu_shim.pth"
# ComfyUI 0.33 imports torchaudio at start-up (comfy/sd.py). No torchaudio release matches torch 2.13 and
# PyPI's are CUDA builds: the newest one, without its compiled extension (torchaudio then imports its
# pure-Python parts, as it does where the extension is absent); nothing in the Wan path uses audio.
"$VPY" -m pip install -q --no-deps torchaudio==2.11.1
rm -f "$SITE"/torchaudio/lib/*.so
# the newest frontend the browser tests also run on (devkit/comfy_server.py: NEWEST_FRONTEND), beside ComfyUI's pinned one
FRONTEND="$(sed -n 's/^NEWEST_FRONTEND = "\(.*\)"/\1/p' "$(dirname "$0")/../devkit/comfy_server.py")"
"$VPY" -m pip install -q --no-deps --target "$COMFY/.venv/frontend-$FRONTEND" "comfyui-frontend-package==$FRONTEND"
(cd "$COMFY" && "$VPY" -c "import torchvision, aiohttp, comfy.options; print('ComfyUI environment ready:', '$VPY')")
