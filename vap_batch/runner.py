"""Running a job list: upload, fill, queue, follow, download; per-row failures; resumable."""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import urllib.error
from dataclasses import asdict, dataclass
from pathlib import Path

from .client import ComfyClient, PromptRefused
from .jobs import Job
from .workflow import OUTPUT_NODE, fill

VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif", ".webp"}
TRANSIENT = (ConnectionError, TimeoutError, urllib.error.URLError, OSError)


class JobFailed(Exception):
    """The job failed on the server (or the server is gone); the message says why."""


@dataclass
class Result:
    row: int
    name: str
    status: str  # ok | failed | skipped
    seconds: float
    output: str
    message: str = ""


def finished_output(out_dir: Path, name: str) -> Path | None:
    """The complete output of a job (downloads land under .partial names until they are whole)."""
    done = [p for p in out_dir.glob(f"{name}.*") if not p.name.endswith(".partial") and p.suffix != ".json"]
    return done[0] if done else None


def run_jobs(jobs: list[Job], client: ComfyClient, workflow: dict, out_dir: Path, retries: int = 3,
             job_timeout: float = 3600, progress=None) -> list[Result]:
    out_dir.mkdir(parents=True, exist_ok=True)
    progress = progress or Progress(len(jobs))
    results = []
    for job in jobs:
        existing = finished_output(out_dir, job.name)
        if existing:
            results.append(Result(job.row, job.name, "skipped", 0.0, str(existing), "output already there"))
        else:
            start = time.monotonic()
            try:
                output = _with_retries(lambda: _run_one(job, client, workflow, out_dir, job_timeout, progress),
                                       retries, progress)
                results.append(Result(job.row, job.name, "ok", time.monotonic() - start, str(output)))
            except (JobFailed, PromptRefused) as err:
                results.append(Result(job.row, job.name, "failed", time.monotonic() - start, "", str(err)))
            except Exception as err:  # anything else is this row's failure too, never the whole run's
                results.append(Result(job.row, job.name, "failed", time.monotonic() - start, "",
                                      f"{type(err).__name__}: {err}"))
        progress.done(results[-1])
        write_report(out_dir / "report.json", results)  # after every row: an interruption keeps the rest
    return results


def _with_retries(fn, retries: int, progress):
    for attempt in range(retries + 1):
        try:
            return fn()
        except urllib.error.HTTPError as err:  # the server answered: not a connection problem
            raise JobFailed(f"the server answered {err.code} {err.reason}: {err.read()[:500].decode(errors='replace')}")
        except TRANSIENT as err:
            if attempt == retries:
                raise JobFailed(f"server unreachable after {retries + 1} attempts: {err}") from None
            wait = 2 ** attempt
            progress.note(f"connection problem ({err}); retrying in {wait} s")
            time.sleep(wait)


def _run_one(job: Job, client: ComfyClient, workflow: dict, out_dir: Path, timeout: float, progress) -> Path:
    for what, path in (("reference", job.reference), ("target", job.target)):
        if not path.is_file():
            raise JobFailed(f"{what} file {path} does not exist")
    values = {"reference": client.upload(job.reference), "target": _upload_target(client, job.target),
              "reference_caption": job.reference_caption, "target_caption": job.target_caption,
              "output_prefix": f"vap_batch/{job.name}", **job.overrides}
    socket = client.websocket()  # open before queueing, so no message is missed
    try:
        prompt_id = client.queue(fill(workflow, values))
        progress.start(job)
        try:
            _follow(socket, prompt_id, timeout, progress)
        except TRANSIENT as err:  # the job is queued: follow it by polling rather than queue it again
            progress.note(f"lost the progress stream ({err}); waiting for the result")
            _poll_until_done(client, prompt_id, timeout)
    finally:
        socket.close()
    history = _finished_history(client, prompt_id)
    for kind, data in history.get("status", {}).get("messages", []):
        if kind == "execution_error":
            raise JobFailed(_error_text(data))
    files = [item for key in ("images", "videos", "gifs")
             for item in history.get("outputs", {}).get(OUTPUT_NODE, {}).get(key, [])]
    if not files:
        raise JobFailed(f"the server finished prompt {prompt_id} without a video from node {OUTPUT_NODE}")
    dest = out_dir / f"{job.name}{Path(files[0]['filename']).suffix}"
    client.download(files[0], dest)
    return dest


def _poll_until_done(client: ComfyClient, prompt_id: str, timeout: float, attempts: int = 5):
    deadline, failures = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        try:
            history = client.history(prompt_id) or {}
            failures = 0
        except TRANSIENT as err:
            failures += 1
            if failures >= attempts:
                raise JobFailed(f"server unreachable while running the job: {err}") from None
            time.sleep(2 ** failures)
            continue
        if history.get("status", {}).get("completed") is not None:
            return
        time.sleep(1)
    raise JobFailed(f"no result within {timeout:.0f} s")


def _finished_history(client: ComfyClient, prompt_id: str, wait: float = 30) -> dict:
    """The prompt's history entry; the server files it just after announcing the end."""
    deadline = time.monotonic() + wait
    while True:
        history = client.history(prompt_id) or {}
        if history.get("status", {}).get("completed") is not None or time.monotonic() > deadline:
            return history
        time.sleep(0.2)


def _upload_target(client: ComfyClient, target: Path) -> str:
    """Images upload as they are; of a video, its first frame is used."""
    if target.suffix.lower() not in VIDEO_SUFFIXES:
        return client.upload(target)
    import av
    with av.open(str(target)) as container:
        frame = next(container.decode(video=0), None)
    if frame is None:
        raise JobFailed(f"target video {target} has no frames")
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / f"{target.stem}_first_frame.png"
        with av.open(str(png), "w", format="image2") as out:  # a PNG written by av itself
            stream = out.add_stream("png")
            stream.width, stream.height, stream.pix_fmt = frame.width, frame.height, "rgb24"
            out.mux(stream.encode(frame.reformat(format="rgb24")))
            out.mux(stream.encode())
        return client.upload(png)


def _follow(socket, prompt_id: str, timeout: float, progress):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = socket.receive()
        data = message.get("data", {})
        if data.get("prompt_id") != prompt_id:
            continue
        kind = message.get("type")
        if kind == "progress":
            progress.step(data.get("value", 0), data.get("max", 0))
        elif kind == "execution_error":
            raise JobFailed(_error_text(data))
        elif kind == "execution_interrupted":
            raise JobFailed("the prompt was interrupted on the server")
        elif kind == "execution_success" or (kind == "executing" and data.get("node") is None):
            return
    raise JobFailed(f"no result within {timeout:.0f} s")


def _error_text(data: dict) -> str:
    return f"{data.get('node_type', 'node')} ({data.get('node_id', '?')}): {data.get('exception_message', '').strip()}"


def write_report(path: Path, results: list[Result]):
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    os.replace(partial, path)


class Progress:
    """Progress on stderr: the current job's sampling steps and the whole list."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.stream, self.finished, self.current = total, stream, 0, None

    def _bar(self, value, maximum, width=20):
        filled = int(width * value / maximum) if maximum else 0
        return "#" * filled + "-" * (width - filled)

    def start(self, job: Job):
        self.current = job
        self.step(0, 0)

    def step(self, value, maximum):
        job = self.current.name if self.current else ""
        self.stream.write(f"\r[{self._bar(self.finished, self.total)}] {self.finished}/{self.total}  {job} "
                          f"[{self._bar(value, maximum)}] {value}/{maximum}   ")
        self.stream.flush()

    def note(self, text: str):
        self.stream.write(f"\n{text}\n")

    def done(self, result: Result):
        self.finished += 1
        detail = f" ({result.message})" if result.message else ""
        self.stream.write(f"\r{result.status:>7}: row {result.row} {result.name} {result.seconds:.0f} s{detail}\n")
        self.stream.flush()
