"""Running a job list: upload, fill, queue, follow, download; per-row failures; resumable."""
from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from vap_core.suffixes import VIDEO_SUFFIXES  # a target with one is a video (its first frame is used), and an output

from .client import TRANSIENT, BadAnswer, ComfyClient, OutputError, PromptRefused, ServerError
from .jobs import Job
from .workflow import OUTPUT_NODE, fill


class JobFailed(Exception):
    """The job failed on the server (or the server is gone); the message says why."""


class PromptLost(Exception):
    """The server no longer knows a queued prompt (it restarted); queueing it again is safe."""


@dataclass
class Result:
    row: int
    name: str
    status: str  # ok | failed | skipped
    seconds: float
    output: str
    message: str = ""


def finished_output(out_dir: Path, name: str) -> Path | None:
    """The job's video, OUT/<name><video suffix>, if it is there (downloads land as .partial until whole)."""
    return next((p for s in VIDEO_SUFFIXES if (p := out_dir / f"{name}{s}").is_file()), None)


def check_output_folder(out_dir: Path):
    """Create the folder if missing and make sure files can be written in it, before any job runs."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=out_dir, prefix=".vap_batch_probe_").close()
    except OSError as err:
        raise OutputError(f"cannot write to the output folder {out_dir} ({err.strerror or err}); make it writable "
                          "or choose another --out. Nothing was queued.") from None


async def run_jobs(jobs: list[Job], client: ComfyClient, workflow: dict, out_dir: Path, retries: int = 3,
                   job_timeout: float = 3600, progress=None, sheet=None) -> list[Result]:
    """Run the jobs one by one on an open client; a row's failure is recorded and the run goes on, but an
    OutputError (the output folder cannot be written) or a ServerError (its certificate does not verify,
    it refuses our credentials) stops it: every later row would fail the same way. sheet (a
    contact_sheet.ContactSheet) is updated after every row."""
    check_output_folder(out_dir)
    progress = progress or Progress(len(jobs))
    results = []
    try:
        for job in jobs:
            results.append(await _result(job, client, workflow, out_dir, retries, job_timeout, progress))
            progress.done(results[-1])
            write_report(out_dir / "report.json", results)  # after every row: an interruption keeps the rest
            if sheet is not None:
                sheet.update(results)  # OUT/index.html
    finally:
        progress.close()
    return results


async def _result(job: Job, client, workflow: dict, out_dir: Path, retries: int, timeout: float, progress) -> Result:
    existing = finished_output(out_dir, job.name)
    if existing:
        return Result(job.row, job.name, "skipped", 0.0, str(existing), "output already there")
    start = time.monotonic()
    try:
        output = await _with_retries(lambda: _run_one(job, client, workflow, out_dir, timeout, progress),
                                     retries, progress)
        return Result(job.row, job.name, "ok", time.monotonic() - start, str(output))
    except (OutputError, ServerError):
        raise
    except (JobFailed, PromptRefused) as err:
        return Result(job.row, job.name, "failed", time.monotonic() - start, "", str(err))
    except Exception as err:  # anything else is this row's failure too, never the whole run's
        return Result(job.row, job.name, "failed", time.monotonic() - start, "", f"{type(err).__name__}: {err}")


async def _with_retries(fn, retries: int, progress):
    for attempt in range(retries + 1):
        try:
            return await fn()
        except BadAnswer as err:  # the server answered: not a connection problem
            raise JobFailed(str(err)) from None
        except (PromptLost, *TRANSIENT) as err:
            problem = str(err) if isinstance(err, PromptLost) else f"server unreachable ({err or type(err).__name__})"
            if attempt == retries:
                raise JobFailed(f"{problem}; gave up after {retries + 1} attempts (--retries {retries})") from None
            wait = 2 ** attempt
            progress.note(f"{problem}; trying again in {wait} s")
            await asyncio.sleep(wait)


async def _run_one(job: Job, client: ComfyClient, workflow: dict, out_dir: Path, timeout: float, progress) -> Path:
    for what, path in (("reference", job.reference), ("target", job.target)):
        if not path.is_file():
            raise JobFailed(f"{what} file {path} does not exist")
    values = {"reference": await client.upload(job.reference), "target": await _upload_target(client, job.target),
              "reference_caption": job.reference_caption, "target_caption": job.target_caption,
              "output_prefix": f"vap_batch/{job.name}", **job.overrides}
    messages = await client.websocket()  # open before queueing, so no message is missed
    try:
        prompt_id = await client.queue(fill(workflow, values))
        progress.start(job)
        try:
            await _follow(messages, job, prompt_id, timeout, progress)
        except TRANSIENT as err:  # the job is queued: follow it by polling rather than queue it again
            progress.note(f"lost the progress stream ({err or type(err).__name__}); waiting for the result")
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


async def _poll_until_done(client: ComfyClient, prompt_id: str, timeout: float, attempts: int = 5):
    deadline, failures = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        try:
            # the queue first: the server moves a finished prompt from its queue to its history in one step
            queued = await client.queued(prompt_id)
            history = await client.history(prompt_id)
            failures = 0
        except TRANSIENT as err:
            failures += 1
            if failures >= attempts:
                raise JobFailed(f"server unreachable while running the job: {err or type(err).__name__}") from None
            await asyncio.sleep(2 ** failures)
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
    """Images upload as they are; of a video, its first frame is used."""
    if target.suffix.lower() not in VIDEO_SUFFIXES:
        return await client.upload(target)
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


def write_report(path: Path, results: list[Result]):
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
        os.replace(partial, path)
    except OSError as err:
        raise OutputError(f"cannot write {path} ({err.strerror or err}); fix the output folder and run again "
                          "(finished rows are skipped).") from None


class Progress:
    """Progress on stderr (or `stream`): a bar for the whole list and one per running job (its sampling
    steps), drawn by tqdm; where the stream is not a terminal (a log file, CI) plain lines instead."""

    def __init__(self, total: int, stream=None):
        self.stream, self.total, self.finished = stream or sys.stderr, total, 0
        # disable=None: no bars where the stream is not a terminal
        self.overall = tqdm(total=total, desc="jobs", unit="job", file=self.stream, disable=None, dynamic_ncols=True)
        self.jobs: dict[int, tqdm] = {}  # row -> its bar

    def _line(self, text: str):
        tqdm.write(text, file=self.stream)  # above the bars, which are drawn again below it

    def start(self, job: Job):
        # mininterval=0: every step the server reports is drawn (they come seconds apart, not thousands a second)
        self.jobs[job.row] = tqdm(total=None, desc=f"row {job.row} {job.name}", unit="step", leave=False,
                                  file=self.stream, disable=None, dynamic_ncols=True, mininterval=0)
        if self.overall.disable:
            self._line(f"running: row {job.row} {job.name}")

    def step(self, job: Job, value: int, maximum: int):
        bar = self.jobs.get(job.row)
        if bar is None or bar.disable:
            return
        if bar.total != maximum:  # each node that reports progress (sampler, decoder) counts on its own
            bar.reset(total=maximum)
        bar.update(value - bar.n)

    def note(self, text: str):
        self._line(text)

    def done(self, result: Result):
        bar = self.jobs.pop(result.row, None)
        if bar is not None:
            bar.close()
        self.finished += 1
        detail = f" ({result.message})" if result.message else ""
        self._line(f"{result.status:>7}: row {result.row} {result.name} {result.seconds:.0f} s{detail}"
                   f" [{self.finished}/{self.total}]")
        self.overall.update(1)

    def close(self):
        for bar in self.jobs.values():
            bar.close()
        self.overall.close()
