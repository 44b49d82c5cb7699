"""Running a job list: upload, fill, queue, follow, download; per-row failures; resumable."""
from __future__ import annotations

import asyncio
import functools
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from vap_core.suffixes import VIDEO_SUFFIXES  # a target with one is a video (its first frame is used), and an output
from vap_core.whole_file import write_whole

from .client import TRANSIENT, BadAnswer, ComfyClient, OutputError, PromptRefused, ServerError
from .first_frame import write_first_frame
from .jobs import Job
from .workflow import OUTPUT_NODE, WorkflowError, job_graph


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
    server: str = ""  # the one that ran it


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


async def run_jobs(jobs: list[Job], clients: list[ComfyClient], workflow: dict, out_dir: Path, retries: int = 3,
                   job_timeout: float = 3600, progress=None, sheet=None) -> list[Result]:
    """Run the jobs on open clients, one job at a time on each, taken from one shared list (rows whose
    output is there are skipped). A job whose server dies, stops answering or loses it goes back to the
    list for any server, and its row fails after `retries` more attempts; any other failure of a row is
    recorded and the run goes on. An OutputError (the output folder cannot be written) stops the run: every
    later row would fail the same way. So does a ServerError (a certificate does not verify, credentials
    are refused) before anything is queued, or mid-run on the last server left; on one of several servers
    mid-run, it retires that server and its job goes back to the list. report.json and sheet (a contact_sheet.ContactSheet) are written after every row."""
    check_output_folder(out_dir)
    progress = progress or Progress(len(jobs))
    results: list[Result] = []

    def record(result: Result):
        results.append(result)
        progress.done(result)
        results.sort(key=lambda r: r.row)
        write_report(out_dir / "report.json", results)  # after every row: an interruption keeps the rest
        if sheet is not None:
            sheet.update(results)  # OUT/index.html

    try:
        todo = []
        for job in jobs:
            existing = finished_output(out_dir, job.name)
            if existing:
                record(Result(job.row, job.name, "skipped", 0.0, str(existing), "output already there"))
            else:
                todo.append(job)
        if todo:
            servers = [ServerState(client, client.url if len(clients) > 1 else "") for client in clients]
            await asyncio.gather(*(server.check(progress) for server in servers))  # before anything is queued
            run = functools.partial(_run_one, workflow=workflow, out_dir=out_dir, timeout=job_timeout, progress=progress)
            await _share(todo, servers, run, retries, record, progress)
    finally:
        progress.close()
    return results


@dataclass(eq=False)
class ServerState:
    """A server's state in a run: it takes jobs while up; after a failure it is down until it answers."""
    client: ComfyClient
    label: str  # on its jobs' progress bars ("" with a single server)
    up: bool = True
    failures: int = 0  # in a row
    retired: bool = False  # after a certificate or credentials error: it takes no more jobs in this run

    async def check(self, progress):
        """A certificate or credentials problem stops the run here, before anything is queued anywhere; a
        server that does not answer yet starts as down."""
        try:
            await self.client.get_json("/system_stats")
        except TRANSIENT as err:
            self.failed()
            progress.note(f"{self.client.url} does not answer ({err or type(err).__name__}); it takes jobs once it does")

    def failed(self):
        self.up, self.failures = False, self.failures + 1

    def pause(self) -> int:
        """Seconds before trying the server again: 1, 2, 4, ... after failures in a row, at most a minute."""
        return min(2 ** (self.failures - 1), 60)

    async def until_usable(self, servers: list["ServerState"], progress):
        """Return once this server answers again; or, while no server is up, after its pause (the next job
        it takes is the test, and counts as that job's attempt, so a run whose servers are all gone ends)."""
        while not self.up:
            await asyncio.sleep(self.pause())
            if not any(s.up for s in servers):
                return
            try:
                await self.client.get_json("/queue")
            except TRANSIENT:
                self.failures += 1
                continue
            self.up = True
            progress.note(f"{self.client.url} answers again; it takes jobs again")

    def answered(self):
        self.up, self.failures = True, 0


async def _share(jobs: list[Job], servers: list[ServerState], run, retries: int, record, progress):
    """One worker per server on a shared list until every job has its result."""
    waiting: asyncio.PriorityQueue = asyncio.PriorityQueue()  # by row: a job given back is taken before later rows
    for job in jobs:
        waiting.put_nowait((job.row, 0, job))
    workers = [asyncio.create_task(_serve(s, servers, waiting, run, retries, record, progress)) for s in servers]
    finished = asyncio.create_task(waiting.join())
    try:
        working = set(workers)
        while not finished.done():
            done, _ = await asyncio.wait([finished, *working], return_when=asyncio.FIRST_COMPLETED)
            for worker in done - {finished}:
                worker.result()  # an error that stops the run; else the worker of a retired server ended
                working.discard(worker)
    finally:
        for task in (finished, *workers):
            task.cancel()
        await asyncio.gather(finished, *workers, return_exceptions=True)


async def _serve(server: ServerState, servers: list[ServerState], waiting: asyncio.PriorityQueue, run, retries: int, record,
                 progress):
    while not server.retired:
        await server.until_usable(servers, progress)
        row, attempts, job = await waiting.get()
        try:
            result = await _attempt(job, server, servers, run, attempts, retries, progress)
            if result is None:  # back to the list (before task_done: the list is never empty in between)
                waiting.put_nowait((row, attempts if server.retired else attempts + 1, job))
            else:
                record(result)
        finally:
            waiting.task_done()


async def _attempt(job: Job, server: ServerState, servers: list[ServerState], run, attempts: int, retries: int,
                   progress) -> Result | None:
    """The job's result on this server, or None where it goes back to the list for another attempt."""
    start, url = time.monotonic(), server.client.url

    def result(status: str, output: str = "", message: str = "") -> Result:
        return Result(job.row, job.name, status, time.monotonic() - start, output, message, url)
    try:
        output = await run(job, server)
    except OutputError:
        raise
    except ServerError as err:  # a certificate or credentials error first seen mid-run (a token expired)
        if not any(s is not server and not s.retired for s in servers):
            raise  # no server left: the run stops with the message
        server.retired, server.up = True, False
        progress.drop(job.row)
        progress.note(f"{err} {url} takes no more jobs in this run; row {job.row} {job.name} goes back to the list.")
        return None
    except (BadAnswer, JobFailed, PromptRefused) as err:  # the server answered: not a connection problem
        server.answered()
        return result("failed", message=str(err))
    except (PromptLost, *TRANSIENT) as err:
        server.failed()
        progress.drop(job.row)
        problem = str(err) if isinstance(err, PromptLost) else f"server unreachable ({err or type(err).__name__})"
        if attempts == retries:
            return result("failed", message=f"{problem}; gave up after {retries + 1} attempts (--retries {retries})")
        where, again = (f" on {url}", f"{url} is tried again") if server.label else ("", "trying again")
        progress.note(f"row {job.row} {job.name}{where}: {problem}; back in the list after attempt {attempts + 1} "
                      f"of {retries + 1}; {again} in {server.pause()} s")
        return None
    except Exception as err:  # anything else is this row's failure too, never the whole run's
        return result("failed", message=f"{type(err).__name__}: {err}")
    server.answered()
    return result("ok", str(output))


def job_values(job: Job, uploaded: dict) -> dict:
    """The workflow fields of a row; `uploaded` holds the server's names of its media files."""
    values = {**uploaded, "reference_caption": job.reference_caption, "target_caption": job.target_caption,
              "output_prefix": f"vap_batch/{job.name}", **job.overrides}
    if job.reference_2 is not None:
        values["reference_2_caption"] = job.reference_2_caption
    return values


def check_workflow(jobs: list[Job], workflow: dict, path) -> None:
    """Every row's graph can be built from the workflow (the rows with reference_cfg or reference_2 add
    nodes to it), so that a workflow unfit for some rows stops the run before anything is queued."""
    problems: dict[str, list[int]] = {}
    for job in jobs:
        media = {"reference": "", "target": "", **({"reference_2": ""} if job.reference_2 is not None else {})}
        try:
            job_graph(workflow, job_values(job, media))
        except WorkflowError as err:
            problems.setdefault(str(err), []).append(job.row)
    if problems:
        raise WorkflowError(f"the workflow {path} cannot run some rows; nothing was queued:\n  " + "\n  ".join(
            f"row{'s' if len(rows) > 1 else ''} {', '.join(map(str, rows))}: {why}." for why, rows in problems.items()))


async def _run_one(job: Job, server: ServerState, workflow: dict, out_dir: Path, timeout: float, progress) -> Path:
    client = server.client
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
        progress.start(job, server.label)
        try:
            await _follow(messages, job, prompt_id, timeout, progress)
        except TRANSIENT as err:  # the job is queued: follow it by polling rather than queue it again
            where = f" on {server.label}" if server.label else ""
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


def write_report(path: Path, results: list[Result]):
    try:
        write_whole(path, lambda partial: partial.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n"))
    except OSError as err:
        raise OutputError(f"cannot write {path} ({err.strerror or err}); fix the output folder and run again "
                          "(finished rows are skipped).") from None


class Progress:
    """Progress on stderr (or `stream`): a bar for the whole list and one per running job (its sampling
    steps; with several servers, named after its server), drawn by tqdm; where the stream is not a
    terminal (a log file, CI) plain lines instead."""

    def __init__(self, total: int, stream=None):
        self.stream, self.total, self.finished = stream or sys.stderr, total, 0
        # disable=None: no bars where the stream is not a terminal
        self.overall = tqdm(total=total, desc="jobs", unit="job", file=self.stream, disable=None, dynamic_ncols=True)
        self.jobs: dict[int, tqdm] = {}  # row -> its bar

    def _line(self, text: str):
        tqdm.write(text, file=self.stream)  # above the bars, which are drawn again below it

    def start(self, job: Job, server: str = ""):
        self.drop(job.row)
        desc = f"row {job.row} {job.name}" + (f" on {server}" if server else "")
        # mininterval=0: every step the server reports is drawn (they come seconds apart, not thousands a second)
        self.jobs[job.row] = tqdm(total=None, desc=desc, unit="step", leave=False, file=self.stream, disable=None,
                                  dynamic_ncols=True, mininterval=0)
        if self.overall.disable:
            self._line(f"running: {desc}")

    def step(self, job: Job, value: int, maximum: int):
        bar = self.jobs.get(job.row)
        if bar is None or bar.disable:
            return
        if bar.total != maximum:  # each node that reports progress (sampler, decoder) counts on its own
            bar.reset(total=maximum)
        bar.update(value - bar.n)

    def note(self, text: str):
        self._line(text)

    def drop(self, row: int):
        """Remove the row's bar (its job ended, or went back to the list)."""
        bar = self.jobs.pop(row, None)
        if bar is not None:
            bar.close()

    def done(self, result: Result):
        self.drop(result.row)
        self.finished += 1
        detail = f" ({result.message})" if result.message else ""
        self._line(f"{result.status:>7}: row {result.row} {result.name} {result.seconds:.0f} s{detail}"
                   f" [{self.finished}/{self.total}]")
        self.overall.update(1)

    def close(self):
        for bar in self.jobs.values():
            bar.close()
        self.overall.close()
