"""Quick start: run the pack's shipped API workflow in a ComfyUI found on this machine, with tiny
random models in place of the real 14B files, and print where the video was written.

    python3 -m tools.demo        (from the pack folder, with any Python 3: it runs itself again, and
                                  ComfyUI, with ComfyUI's own Python)

The tiny models have random weights, so the video is noise: this shows the graph running end to
end (loaders, expert, reference encoding, KSampler, decode, save) on your ComfyUI, not a result.
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import time

from devkit import comfy_server


def main() -> int:
    root, why = comfy_server.find_comfyui()
    python, why = comfy_server.comfy_python(root) if root else (None, why)
    if python is None:
        print(why)
        if subprocess.run([sys.executable, "-c", "import torch, safetensors"], capture_output=True).returncode:
            print("\n(With torch and safetensors in this Python, this demo would also check the VAP model against "
                  "the oracle (the paper's code) without ComfyUI: pip install -r requirements.txt)")
            return 2
        print("\nMeanwhile, the pure-PyTorch check of the VAP model against the oracle (the paper's code):\n")
        return subprocess.call([sys.executable, "-m", "tools.core_demo"], cwd=comfy_server.ROOT)
    if importlib.util.find_spec("aiohttp") is None:  # the server driver's client: ComfyUI's Python has it
        return subprocess.call([python, "-m", "tools.demo"], cwd=comfy_server.ROOT)
    began = time.monotonic()
    base, output = root / "temp" / "vap_demo", root / "output"  # ComfyUI's own temp and output folders
    print(f"ComfyUI: {root}\nwriting tiny random models to {base} ...")
    shutil.rmtree(base, ignore_errors=True)  # the demo's own folder, from an earlier run
    comfy_server.prepare_base(base, python, root, cog=False)  # the demo runs the Wan workflow
    server = comfy_server.Server(root, python, base, output=output)
    try:
        print(f"queueing workflows/api/{comfy_server.DEFAULT_WORKFLOW.name} (tiny models, 64x64, 17 frames, 4 steps) "
              f"on {server.url} ...")
        start = time.monotonic()
        history = server.run(comfy_server.tiny_workflow(steps=4, length=17, changes={
            ("SaveVideo", "filename_prefix"): "video/vap_tiny_demo"}))
    finally:
        server.stop()
    error = comfy_server.execution_error(history)
    if error:
        print(f"ComfyUI reported an error in node {error['node_type']}: {error['exception_message']}")
        return 1
    item = comfy_server.saved_files(history)[0]
    path = output / item["subfolder"] / item["filename"]
    print(f"done: {path}\n({time.monotonic() - began:.0f} s in all, {time.monotonic() - start:.0f} s of it running the "
          "workflow. Tiny random models make noise; with the real files, open the template 'Video-As-Prompt Wan2.1 I2V "
          "480p' in ComfyUI.)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
