"""Finding a ComfyUI, preparing an isolated base directory with tiny models, and driving a ComfyUI
server over HTTP. Runs in the pack's own environment (no ComfyUI import)."""
from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
API_WORKFLOW = ROOT / "workflows" / "api" / "vap_wan21_i2v_480p.json"
sys.path.insert(0, str(HERE))
import tiny_names as tiny  # noqa: E402

SETUP_HINT = ("Install this pack in your ComfyUI (ComfyUI/custom_nodes/), or set COMFYUI_PATH to a ComfyUI folder "
              "(and COMFYUI_PYTHON to the Python that runs it). To give a ComfyUI source folder a CPU-only "
              "environment: bash tests/comfyui/setup_env.sh PATH/TO/ComfyUI")


def find_comfyui() -> tuple[Path | None, str]:
    """(ComfyUI folder, why) from $COMFYUI_PATH, the ComfyUI holding this pack, or ~/ComfyUI."""
    candidates = [Path(os.environ["COMFYUI_PATH"])] if os.environ.get("COMFYUI_PATH") else []
    if ROOT.parent.name == "custom_nodes":
        candidates.append(ROOT.parent.parent)
    candidates.append(Path.home() / "ComfyUI")
    for path in candidates:
        if (path / "main.py").is_file() and (path / "comfy").is_dir():
            return path, f"ComfyUI at {path}"
    return None, f"no ComfyUI found ($COMFYUI_PATH, the ComfyUI holding this pack, ~/ComfyUI). {SETUP_HINT}"


def comfy_python(comfy_root: Path) -> tuple[str | None, str]:
    """The Python that runs that ComfyUI: $COMFYUI_PYTHON, its .venv, or this interpreter if it can."""
    options = [os.environ.get("COMFYUI_PYTHON"), str(comfy_root / ".venv" / "bin" / "python"), sys.executable]
    for python in filter(None, options):
        if Path(python).exists() and subprocess.run([python, "-c", "import aiohttp, torch, safetensors, av, yaml"],
                                                    capture_output=True).returncode == 0:
            return python, python
    return None, f"ComfyUI at {comfy_root} has no Python environment with its requirements. {SETUP_HINT}"


def prepare_base(base: Path, python: str, comfy_root: Path):
    """An isolated --base-directory: the pack and the test loaders in custom_nodes/, tiny models in models/."""
    custom = base / "custom_nodes"
    custom.mkdir(parents=True, exist_ok=True)
    for name, target in (("ComfyUI-Video-As-Prompt", ROOT), ("vap_test_nodes", HERE / "tiny_nodes")):
        link = custom / name
        if not link.exists():
            link.symlink_to(target, target_is_directory=True)
    subprocess.run([python, str(HERE / "tiny_models.py"), str(base), str(comfy_root)], check=True,
                   capture_output=True, text=True, env=comfy_env())


# the newest ComfyUI frontend the browser tests also run on (ComfyUI 0.3.64 pins 1.27.10); to move
# on, change the version here and run setup_env.sh again
NEWEST_FRONTEND = "1.58.1"


def newest_frontend(comfy_root: Path) -> Path | None:
    """The static folder of comfyui-frontend-package NEWEST_FRONTEND that setup_env.sh installs beside
    ComfyUI's own environment, or None."""
    static = comfy_root / ".venv" / f"frontend-{NEWEST_FRONTEND}" / "comfyui_frontend_package" / "static"
    return static if (static / "index.html").is_file() else None


def comfy_env() -> dict:
    # ComfyUI samples in a worker thread; without this OpenMP spins and CPU sampling runs ~15x slower
    return {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}


# class_type -> the test-only loader with the same inputs that reads the tiny file (tiny_nodes/)
TINY_SWAP = {"CLIPLoader": "VAPTestTextEncoderLoader", "CLIPVisionLoader": "VAPTestCLIPVisionLoader"}


def tiny_inputs(steps: int = 2, length: int = 9, size: int = tiny.SIZE) -> dict:
    """(class_type, input name) -> value: tiny sizes and the test inputs, for the shipped workflows."""
    return {("WanImageToVideo", "width"): size, ("WanImageToVideo", "height"): size,
            ("WanImageToVideo", "length"): length,
            ("VAPLoadReferenceVideo", "video"): tiny.REFERENCE, ("VAPLoadReferenceVideo", "frames"): length,
            ("LoadImage", "image"): tiny.START_IMAGE, ("KSampler", "steps"): steps, ("BasicScheduler", "steps"): steps,
            ("SaveVideo", "filename_prefix"): "vap_test"}


def tiny_workflow(steps: int = 2, length: int = 9, size: int = tiny.SIZE, changes: dict | None = None,
                  workflow: Path = API_WORKFLOW) -> dict:
    """A shipped API workflow with tiny models, tiny sizes and the test inputs substituted;
    `changes` maps (class_type, input name) to a value."""
    graph = copy.deepcopy(json.loads(workflow.read_text()))
    unknown = {class_type for class_type, _ in changes or {}} - {n["class_type"] for n in graph.values()}
    if unknown:
        raise KeyError(f"the workflow has no {sorted(unknown)} node")
    for node in graph.values():
        node["class_type"] = TINY_SWAP.get(node["class_type"], node["class_type"])
    for (class_type, key), value in {**tiny_inputs(steps, length, size), **(changes or {})}.items():
        for node in graph.values():
            if node["class_type"] == class_type:
                node["inputs"][key] = value
    return graph


def batch_media(base: Path, folder: Path) -> Path:
    """The tiny test media as a batch job list names them (ref.mp4, target.png, target_clip.mp4 and
    bad.mp4, which is not a video), copied from the base directory's input folder into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for src, dst in ((tiny.REFERENCE, "ref.mp4"), (tiny.START_IMAGE, "target.png"), (tiny.REFERENCE, "target_clip.mp4"),
                     (tiny.NOT_A_VIDEO, "bad.mp4")):
        (folder / dst).write_bytes((base / "input" / src).read_bytes())
    return folder


class Server:
    """A ComfyUI server subprocess on a free loopback port."""

    def __init__(self, comfy_root: Path, python: str, base: Path, output: Path | None = None,
                 front_end_root: Path | None = None):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "server.log"
        cmd = [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--disable-auto-launch", "--base-directory", str(base)]
        if output is not None:
            cmd += ["--output-directory", str(output)]
        if front_end_root is not None:
            cmd += ["--front-end-root", str(front_end_root)]
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=comfy_root, stdout=self.log, stderr=subprocess.STDOUT, env=comfy_env())
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited at start-up:\n{self.log_text()[-3000:]}")
            try:
                self.get("/system_stats")
                return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within 120 s:\n{self.log_text()[-3000:]}")

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.loads(r.read())

    def queue(self, graph: dict) -> tuple[int, dict]:
        """POST /prompt: (HTTP status, JSON answer)."""
        req = urllib.request.Request(self.url + "/prompt", data=json.dumps({"prompt": graph}).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def wait(self, prompt_id: str, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                return history[prompt_id]
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI died:\n{self.log_text()[-3000:]}")
            time.sleep(0.5)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s")

    def run(self, graph: dict, timeout: float = 600) -> dict:
        status, answer = self.queue(graph)
        if status != 200:
            raise AssertionError(f"ComfyUI refused the prompt ({status}): {json.dumps(answer)[:2000]}")
        return self.wait(answer["prompt_id"], timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def execution_error(history: dict) -> dict | None:
    """The execution_error message of a finished prompt, or None if it succeeded."""
    for kind, data in history.get("status", {}).get("messages", []):
        if kind == "execution_error":
            return data
    return None


def saved_files(history: dict) -> list[dict]:
    return [item for out in history.get("outputs", {}).values() for key in ("images", "gifs", "videos")
            for item in out.get(key, [])]
