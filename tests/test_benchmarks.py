"""The benchmark sections that only a GPU measures still run, at a tiny size on the CPU (the figures
are not checked: benchmarks print, tests do not time)."""
import subprocess
import sys

from devkit import comfy_server as harness


def test_the_comfyui_gpu_section_runs_at_a_tiny_size_without_a_gpu(comfyui):
    root, _ = comfyui
    out = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "comfy_gpu"], capture_output=True, text=True,
                         cwd=harness.ROOT, env={**harness.comfy_env(), "COMFYUI_PATH": str(root)}, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith(("| default", "| fp8"))]
    assert len(rows) == 2, out.stdout  # bf16 and fp8 weights
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[2]) > 0 and float(cells[3]) > 0 and "WAN21" in cells[9] and "VAPExpert" in cells[9], row
