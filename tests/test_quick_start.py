"""The README's quick start, run as written: its first command (the demo) on the ComfyUI the tests use."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import av

from devkit import tiny_names as tiny

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start\s+```bash\n(.*?)```", readme, re.S).group(1)
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def test_the_readme_quick_start_has_the_demo_then_the_tests():
    assert quick_start_commands() == ["python3 -m tools.demo", "bash tests/run.sh"]


def test_the_demo_makes_a_video_in_comfyuis_output_folder(comfyui):
    root, _ = comfyui
    demo = quick_start_commands()[0]
    run = subprocess.run(demo, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "COMFYUI_PATH": str(root)})
    assert run.returncode == 0, run.stdout + run.stderr
    path = Path(re.search(r"^done: (.+)$", run.stdout, re.M).group(1))
    assert path.parent == root / "output" / "video" and path.name.startswith("vap_tiny_demo"), path
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 17 and frames[0].shape == (tiny.SIZE, tiny.SIZE, 3)
    # the demo runs the Wan workflow only, so it leaves CogVideoX's 430 MB random VAE unwritten
    assert not (root / "temp" / "vap_demo" / "models" / "vae" / tiny.COG_VAE).exists()
