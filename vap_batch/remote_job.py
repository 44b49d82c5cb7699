"""One job on one ComfyUI server, over its HTTP API and websocket: upload the media, queue the filled
graph, follow it (by polling where the websocket drops), download the video."""
from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from vap_core.suffixes import VIDEO_SUFFIXES  # a target with one is a video (its first frame is used), and an output

from .client import TRANSIENT, ComfyClient
from .first_frame import write_first_frame
from .jobs import Job
from .workflow import OUTPUT_NODE, job_graph, job_values


class JobFailed(Exception):
    """The job failed on the server (or the server is gone); the message says why."""


class PromptLost(Exception):
    """The server no longer knows a queued prompt (it restarted); queueing it again is safe."""


async def run_job(job: Job, client: ComfyClient, *, workflow: dict, out_dir: Path, timeout: float, progress,
                  label: str = "") -> Path:
    """Run the job on the server `client` talks to and download its video into out_dir: the video's path.
    JobFailed: the server ran it and it failed (or never finished within `timeout` s); PromptLost: the
    server forgot it; a connection error: the server is gone or hung. `label` names the server on its
    progress bar and notes ("" with a single server)."""
    media = {"reference": job.reference, "target": job.target, "reference_2": job.reference_2}
    for what, path in media.items():
        if path is not None and not path.is_file():
            raise JobFailed(f"{what} file {path} does not exist")
    uploaded = {"reference": await client.upload(job.reference), "target": await _upload_target(client, job.target)}
    if job.reference_2 is not None:
        uploaded["reference_2"] = await client.upload(job.reference_2)
    messages = await client.websocket()  # open before queueing, so no message is missed
    try:
        prompt_id = await client.queue(job_graph(workflow, job_values(job, uploaded)))
        progress.start(job, label)
        try:
            await _follow(messages, job, prompt_id, timeout, progress)
        except TRANSIENT as err:  # the job is queued: follow it by polling rather than queue it again
            where = f" on {label}" if label else ""
            progress.note(f"row {job.row} {job.name}{where}: lost the progress stream ({err or type(err).__name__}); "
                          "waiting for the result")
            await _poll_until_done(client, prompt_id, timeout)
    finally:
        await messages.close()
    history = await _finished_history(client, prompt_id)
    for kind, data in history.get("status", {}).get("messages", []):
        if kind == "execution_error":
            raise JobFailed(_error_text(data))
    files = [item for key in ("images", "videos", "gifs")
             for item in history.get("outputs", {}).get(OUTPUT_NODE, {}).get(key, [])]
    if not files:
        raise JobFailed(f"the server finished prompt {prompt_id} without a video from node {OUTPUT_NODE}")
    suffix = Path(files[0]["filename"]).suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise JobFailed(f"node {OUTPUT_NODE} saved {files[0]['filename']}, not a video ({', '.join(VIDEO_SUFFIXES)}); "
                        "save with SaveVideo as the pack's workflow does")
    dest = out_dir / f"{job.name}{suffix}"
    await client.download(files[0], dest)
    return dest


async def _poll_until_done(client: ComfyClient, prompt_id: str, timeout: float, attempts: int = 2):
    """Wait for a queued prompt by polling (how long the job runs is `timeout`'s business); a server that
    does not answer a poll `attempts` times in a row (each within client.QUICK, 1 s apart), dead or hung,
    raises the connection error within seconds, so that the job goes back to the list."""
    deadline, failures = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        try:
            # the queue first: the server moves a finished prompt from its queue to its history in one step
            queued = await client.queued(prompt_id)
            history = await client.history(prompt_id)
            failures = 0
        except TRANSIENT:
            failures += 1
            if failures >= attempts:
                raise
            await asyncio.sleep(1)
            continue
        if history is not None:  # the server files a prompt in its history once it has finished
            return
        if not queued:
            raise PromptLost(f"the server lost prompt {prompt_id} (it is neither queued nor in its history: "
                             "did the server restart?)")
        await asyncio.sleep(1)
    raise JobFailed(f"no result within {timeout:.0f} s")


async def _finished_history(client: ComfyClient, prompt_id: str, wait: float = 30) -> dict:
    """The prompt's history entry; the server files it just after announcing the end."""
    deadline = time.monotonic() + wait
    while True:
        history = await client.history(prompt_id) or {}
        if history.get("status", {}).get("completed") is not None or time.monotonic() > deadline:
            return history
        await asyncio.sleep(0.2)


async def _upload_target(client: ComfyClient, target: Path) -> str:
    """Images upload as they are; of a video, its first frame is used, as players show it."""
    if target.suffix.lower() not in VIDEO_SUFFIXES:
        return await client.upload(target)
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / f"{target.stem}_first_frame.png"
        if not write_first_frame(target, png, "png"):
            raise JobFailed(f"target video {target} has no frames")
        return await client.upload(png)


async def _follow(messages, job: Job, prompt_id: str, timeout: float, progress):
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = await messages.receive(left)
        except asyncio.TimeoutError:
            break
        data = message.get("data", {})
        if data.get("prompt_id") != prompt_id:
            continue
        kind = message.get("type")
        if kind == "progress":
            progress.step(job, data.get("value", 0), data.get("max", 0))
        elif kind == "execution_error":
            raise JobFailed(_error_text(data))
        elif kind == "execution_interrupted":
            raise JobFailed("the prompt was interrupted on the server")
        elif kind == "execution_success" or (kind == "executing" and data.get("node") is None):
            return
    raise JobFailed(f"no result within {timeout:.0f} s")


def _error_text(data: dict) -> str:
    return f"{data.get('node_type', 'node')} ({data.get('node_id', '?')}): {data.get('exception_message', '').strip()}"
