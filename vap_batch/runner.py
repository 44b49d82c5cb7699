"""Running a job list across servers: one shared list, one worker per server taking one job at a time, a
job whose server fails given back to the list; per-row failures; resumable (finished rows are skipped)."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from .client import TRANSIENT, BadAnswer, ComfyClient, OutputError, PromptRefused, ServerError
from .jobs import Job
from .remote_job import JobFailed, PromptLost, run_job
from .report import Progress, Result, check_output_folder, finished_output, write_report


async def run_jobs(jobs: list[Job], clients: list[ComfyClient], workflow: dict, out_dir: Path, retries: int = 3,
                   job_timeout: float = 3600, progress=None, sheet=None) -> list[Result]:
    """Run the jobs on open clients, one job at a time on each, taken from one shared list (rows whose
    output is there are skipped). A job whose server dies, stops answering or loses it goes back to the
    list for any server, and its row fails after `retries` more attempts; any other failure of a row is
    recorded and the run goes on. An OutputError (the output folder cannot be written) stops the run: every
    later row would fail the same way. So does a ServerError (a certificate does not verify, credentials
    are refused) before anything is queued, or mid-run on the last server left; on one of several servers
    mid-run, it retires that server and its job goes back to the list. report.json and sheet (a
    contact_sheet.ContactSheet) are written after every row."""
    check_output_folder(out_dir)
    run = Run(workflow=workflow, out_dir=out_dir, retries=retries, timeout=job_timeout,
              progress=progress or Progress(len(jobs)), sheet=sheet)
    try:
        todo = []
        for job in jobs:
            existing = finished_output(out_dir, job.name)
            if existing:
                run.record(Result(job.row, job.name, "skipped", 0.0, str(existing), "output already there"))
            else:
                todo.append(job)
        if todo:
            run.servers = [ServerState(client, client.url if len(clients) > 1 else "") for client in clients]
            await asyncio.gather(*(server.check(run.progress) for server in run.servers))  # before anything is queued
            await run.share(todo)
    finally:
        run.progress.close()
    return run.results


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

    async def until_usable(self, servers: list[ServerState], progress):
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


@dataclass(eq=False, kw_only=True)
class Run:
    """One run of run_jobs: its settings, its servers, the list of jobs waiting and the results so far."""
    workflow: dict
    out_dir: Path
    retries: int  # attempts after the first of a job whose server fails
    timeout: float  # seconds one job may take
    progress: Progress
    sheet: object = None  # a contact_sheet.ContactSheet, or None
    servers: list[ServerState] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    # (row, attempts so far, job), by row: a job given back is taken before later rows
    waiting: asyncio.PriorityQueue = field(default_factory=asyncio.PriorityQueue)

    def record(self, result: Result):
        self.results.append(result)
        self.progress.done(result)
        self.results.sort(key=lambda r: r.row)
        write_report(self.out_dir / "report.json", self.results)  # after every row: an interruption keeps the rest
        if self.sheet is not None:
            self.sheet.update(self.results)  # OUT/index.html

    async def share(self, jobs: list[Job]):
        """One worker per server on the shared list until every job has its result."""
        for job in jobs:
            self.waiting.put_nowait((job.row, 0, job))
        workers = [asyncio.create_task(self._serve(server)) for server in self.servers]
        finished = asyncio.create_task(self.waiting.join())
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

    async def _serve(self, server: ServerState):
        while not server.retired:
            await server.until_usable(self.servers, self.progress)
            row, attempts, job = await self.waiting.get()
            try:
                result = await self._attempt(job, server, attempts)
                if result is None:  # back to the list (before task_done: the list is never empty in between)
                    self.waiting.put_nowait((row, attempts if server.retired else attempts + 1, job))
                else:
                    self.record(result)
            finally:
                self.waiting.task_done()

    async def _attempt(self, job: Job, server: ServerState, attempts: int) -> Result | None:
        """The job's result on this server, or None where it goes back to the list for another attempt."""
        start, url, progress = time.monotonic(), server.client.url, self.progress

        def result(status: str, output: str = "", message: str = "") -> Result:
            return Result(job.row, job.name, status, time.monotonic() - start, output, message, url)
        try:
            output = await run_job(job, server.client, workflow=self.workflow, out_dir=self.out_dir,
                                   timeout=self.timeout, progress=progress, label=server.label)
        except OutputError:
            raise
        except ServerError as err:  # a certificate or credentials error first seen mid-run (a token expired)
            if not any(s is not server and not s.retired for s in self.servers):
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
            if attempts == self.retries:
                return result("failed", message=f"{problem}; gave up after {self.retries + 1} attempts "
                                                f"(--retries {self.retries})")
            where, again = (f" on {url}", f"{url} is tried again") if server.label else ("", "trying again")
            progress.note(f"row {job.row} {job.name}{where}: {problem}; back in the list after attempt {attempts + 1} "
                          f"of {self.retries + 1}; {again} in {server.pause()} s")
            return None
        except Exception as err:  # anything else is this row's failure too, never the whole run's
            return result("failed", message=f"{type(err).__name__}: {err}")
        server.answered()
        return result("ok", str(output))
