"""The README's quick start, run as written: its first command (the demo) on the ComfyUI the tests use, found
through $COMFYUI_PATH and as the ComfyUI the pack is installed in."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import av

from devkit import tiny_names as tiny

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start\s+```bash\n(.*?)```", readme, re.S).group(1)
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def run_demo(root: Path, pack: Path, env: dict) -> str:
    """The README's demo command run from `pack`: checks the video it reports in `root`'s output folder; its output."""
    run = subprocess.run(quick_start_commands()[0], shell=True, cwd=pack, capture_output=True, text=True,
                         timeout=600, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    path = Path(re.search(r"^done: (.+)$", run.stdout, re.M).group(1))
    assert path.parent.resolve() == (root / "output" / "video").resolve(), path
    assert path.name.startswith("vap_tiny_demo"), path
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 17 and frames[0].shape == (tiny.SIZE, tiny.SIZE, 3)
    return run.stdout


def test_the_readme_quick_start_has_the_demo_then_the_tests():
    assert quick_start_commands() == ["python3 -m tools.demo", "bash tests/run.sh"]


def test_the_demo_makes_a_video_in_comfyuis_output_folder(comfyui):
    root, _ = comfyui
    run_demo(root, ROOT, {**os.environ, "COMFYUI_PATH": str(root)})
    # the demo runs the Wan workflow only, so it leaves CogVideoX's 430 MB random VAE unwritten
    assert not (root / "temp" / "vap_demo" / "models" / "vae" / tiny.COG_VAE).exists()


def test_the_demo_finds_the_comfyui_the_pack_is_installed_in(comfyui, tmp_path):
    """A copy of the pack in that ComfyUI's custom_nodes, with no $COMFYUI_PATH and no ~/ComfyUI."""
    root, _ = comfyui
    pack = root / "custom_nodes" / "vap-quick-start-test"
    shutil.copytree(ROOT, pack, ignore=shutil.ignore_patterns(".git", ".venv", "node_modules", "__pycache__",
                                                              ".screenshots"))
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("COMFYUI_PATH", "COMFYUI_PYTHON")}
        out = run_demo(root, pack, {**env, "HOME": str(tmp_path)})
        assert Path(re.search(r"^ComfyUI: (.+)$", out, re.M).group(1)).resolve() == root.resolve(), out
    finally:
        shutil.rmtree(pack)
