"""Finding a ComfyUI, preparing an isolated base directory with tiny models, and driving a ComfyUI
server over HTTP(S) with vap_batch's client. Runs in the pack's own environment (no ComfyUI import)."""
from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from devkit import tiny_names as tiny
from vap_batch.workflow import DEFAULT_WORKFLOW

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

SETUP_HINT = ("Install this pack in your ComfyUI (ComfyUI/custom_nodes/), or set COMFYUI_PATH to a ComfyUI folder "
              "(and COMFYUI_PYTHON to the Python that runs it). To give a ComfyUI source folder a CPU-only "
              "environment: bash tools/setup_env.sh PATH/TO/ComfyUI")


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


def comfy_version(comfy_root: Path) -> tuple[int, ...]:
    """That ComfyUI's version, from its comfyui_version.py (0.3.64 -> (0, 3, 64))."""
    text = (comfy_root / "comfyui_version.py").read_text()
    return tuple(int(part) for part in re.search(r'__version__ = "([\d.]+)"', text).group(1).split("."))


def comfy_python(comfy_root: Path) -> tuple[str | None, str]:
    """The Python that runs that ComfyUI: $COMFYUI_PYTHON, its .venv, or this interpreter if it can."""
    options = [os.environ.get("COMFYUI_PYTHON"), str(comfy_root / ".venv" / "bin" / "python"), sys.executable]
    for python in filter(None, options):
        if Path(python).exists() and subprocess.run([python, "-c", "import aiohttp, torch, safetensors, av, yaml"],
                                                    capture_output=True).returncode == 0:
            return python, python
    return None, f"ComfyUI at {comfy_root} has no Python environment with its requirements. {SETUP_HINT}"


def prepare_base(base: Path, python: str, comfy_root: Path, cog: bool = True):
    """An isolated --base-directory: the pack and the test loaders in custom_nodes/, tiny models in models/
    (cog=False: none of CogVideoX's)."""
    custom = base / "custom_nodes"
    custom.mkdir(parents=True, exist_ok=True)
    for name, target in (("ComfyUI-Video-As-Prompt", ROOT), ("vap_test_nodes", HERE / "tiny_nodes")):
        link = custom / name
        if link.is_symlink() and link.resolve() != target.resolve():
            link.unlink()  # left by an earlier version of the pack (its files have moved)
        if not link.exists():
            link.symlink_to(target, target_is_directory=True)
    run_module(python, "devkit.tiny_models", base, comfy_root, *([] if cog else ["--no-cog"]), check=True,
               capture_output=True, text=True)


def sharing_base(base: Path, folder: Path, *shared: str) -> Path:
    """A --base-directory of its own (output, user, database, log) with the folders of `base` named in
    `shared` linked in, for a second server beside one on `base`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in shared:
        (folder / name).symlink_to(base / name, target_is_directory=True)
    return folder


def run_module(python: str, module: str, *args, **kwargs) -> subprocess.CompletedProcess:
    """python -m MODULE ARGS from the pack folder (so `tools`, `tests` and `vap_core` import), in
    ComfyUI's environment variables; kwargs go to subprocess.run."""
    return subprocess.run([python, "-m", module, *map(str, args)], cwd=ROOT, env=comfy_env(), **kwargs)


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
            ("WanImageToVideo", "length"): length, ("VAPCogVideoXImageToVideo", "width"): size,
            ("VAPCogVideoXImageToVideo", "height"): size, ("VAPCogVideoXImageToVideo", "length"): length,
            ("VAPLoadReferenceVideo", "video"): tiny.REFERENCE, ("VAPLoadReferenceVideo", "frames"): length,
            ("LoadImage", "image"): tiny.START_IMAGE, ("KSampler", "steps"): steps, ("BasicScheduler", "steps"): steps,
            ("SaveVideo", "filename_prefix"): "vap_test"}


def tiny_workflow(steps: int = 2, length: int = 9, size: int = tiny.SIZE, changes: dict | None = None,
                  workflow: Path = DEFAULT_WORKFLOW) -> dict:
    """A shipped API workflow with tiny models, tiny sizes and the test inputs substituted;
    `changes` maps (class_type, input name) to a value."""
    graph = json.loads(workflow.read_text())
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


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 and its key, (cert.pem, key.pem), made with the openssl command."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


class Server:
    """A ComfyUI server subprocess on a free loopback port, driven through vap_batch's client; with
    tls=(certificate, key) it serves https, and the client trusts that certificate."""

    def __init__(self, comfy_root: Path, python: str, base: Path, output: Path | None = None,
                 front_end_root: Path | None = None, tls: tuple[Path, Path] | None = None):
        # imported here, so that finding a ComfyUI (the demo's first step) works in a Python without aiohttp
        from vap_batch.client import TRANSIENT, ComfyClient

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.base = base
        self.log_path = base / "server.log"
        cmd = [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--disable-auto-launch", "--base-directory", str(base)]
        if output is not None:
            cmd += ["--output-directory", str(output)]
        if front_end_root is not None:
            cmd += ["--front-end-root", str(front_end_root)]
        if tls is not None:
            cmd += ["--tls-certfile", str(tls[0]), "--tls-keyfile", str(tls[1])]
        self._loop = asyncio.new_event_loop()  # the client's: Server's methods block until their answer
        self.client = ComfyClient(self.url, ca_bundle=tls[0] if tls else None, timeout=30)
        self._call(self.client.open())
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=comfy_root, stdout=self.log, stderr=subprocess.STDOUT, env=comfy_env())
        try:
            self._wait_until_up(TRANSIENT)
        except BaseException:
            self.stop()
            raise

    def _wait_until_up(self, transient: tuple, seconds: float = 120):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited at start-up:\n{self.log_text()[-3000:]}")
            try:
                self.get("/system_stats")
                return
            except transient:
                time.sleep(0.5)
        raise RuntimeError(f"ComfyUI did not answer within {seconds:.0f} s:\n{self.log_text()[-3000:]}")

    def _call(self, coroutine):
        return self._loop.run_until_complete(coroutine)

    def log_text(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def get(self, path: str):
        return self._call(self.client.get_json(path))

    def queue(self, graph: dict) -> tuple[int, dict]:
        """POST /prompt: (HTTP status, JSON answer); 200 and 400 (refused at validation) come back."""
        return self._call(self.client.post_json("/prompt", {"prompt": graph}, expect=(200, 400)))

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

    def interrupt_during(self, graph: dict, node: str, at: int = 1, timeout: float = 600) -> dict:
        """Queue `graph`, POST /interrupt once node `node` reports progress `at` (a sampler's step, a reader's
        frame), and wait for the run to stop: {"seconds": from the interrupt to the server's
        execution_interrupted message, "step_seconds": between the node's last two progress reports before
        the interrupt (None for at=1), "node": the node it stopped in, "outputs": the prompt's history's}.
        Raises if the run ends otherwise."""
        return self._call(self._interrupt_during(graph, node, at, timeout))

    async def _interrupt_during(self, graph: dict, node: str, at: int, timeout: float) -> dict:
        messages = await self.client.websocket()  # open before queueing, so that no message is missed
        try:
            prompt_id = await self.client.queue(graph)
            reports, sent = [], None
            while True:
                message = await messages.receive(timeout)
                kind, data = message.get("type"), message.get("data", {})
                if data.get("prompt_id") != prompt_id:
                    continue
                if kind == "progress" and data.get("node") == node and sent is None:
                    reports.append(time.monotonic())
                    if data.get("value", 0) >= at:
                        sent = time.monotonic()
                        await self.client.post_json("/interrupt", {})
                elif kind == "execution_interrupted":
                    if sent is None:
                        raise RuntimeError(f"prompt {prompt_id} was interrupted before node {node} reported {at}")
                    seconds = time.monotonic() - sent
                    break
                elif kind in ("execution_success", "execution_error"):
                    when = f"before node {node} reported {at}" if sent is None else "after the interrupt"
                    raise RuntimeError(f"prompt {prompt_id} ended with {kind} {when}: {json.dumps(data)[:1000]}")
        finally:
            await messages.close()
        history = await self.client.history(prompt_id) or {}
        return {"seconds": seconds, "step_seconds": reports[-1] - reports[-2] if len(reports) > 1 else None,
                "node": data.get("node_id"), "outputs": history.get("outputs", {})}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        if not self._loop.is_closed():
            self._call(self.client.close())
            self._loop.close()


def execution_error(history: dict) -> dict | None:
    """The execution_error message of a finished prompt, or None if it succeeded."""
    for kind, data in history.get("status", {}).get("messages", []):
        if kind == "execution_error":
            return data
    return None


def saved_files(history: dict) -> list[dict]:
    return [item for out in history.get("outputs", {}).values() for key in ("images", "gifs", "videos")
            for item in out.get(key, [])]
