"""Queue many Video-As-Prompt jobs on a running ComfyUI through its HTTP API.

    python -m vap_batch jobs.csv --out videos/ [--server http://127.0.0.1:8188]
    python -m vap_batch jobs.csv --out videos/ --server http://gpu1:8188 --server http://gpu2:8188
    python -m vap_batch jobs.csv --out videos/ --server https://gpu.example.com --header "Authorization: Bearer ..."

The job list (CSV with a header row, or a JSON list of objects) has one job per row:
  reference          the reference video (path, relative to the list's folder or absolute)
  target             the target image, or a video whose first frame is used
  reference_caption  what the reference video shows
  target_caption     what the generated video should show
  name               (optional) the output file's name; default: row number + file names
and optional per-row overrides: seed, steps, cfg, frames, width, height, negative_prompt,
reference_negative_prompt, expert (a file in models/vap), rope_delta, start_percent, end_percent;
reference_cfg (the row is sampled with reference guidance, as in the pack's reference guidance workflow);
reference_2 and reference_2_caption, optionally reference_2_negative_prompt (a second reference, as in
the pack's two-reference workflow).

Each job uploads its media into the server's input folder, fills the pack's API workflow
(workflows/api/vap_wan21_i2v_480p.json, or --workflow with the same node IDs), queues it, follows its
progress over the server's websocket and downloads the video to OUT/<name>.mp4 (or .webm, .mov, .mkv,
.avi, .gif, .webp: the suffix the server's file has). A rerun skips rows whose video is already there.
With several --server, each server runs one job at a time from the shared list; a job whose server
dies, stops answering or loses it (restarted) goes back to the list for any server, up to --retries
more attempts, and that server takes jobs again once it answers. Failed rows are reported with the
server's message and the run goes on; OUT/report.json records every row and the server that ran it. A
bad job list, or an output folder that cannot be written, stops the run with exit status 2, and so does
a server whose certificate does not verify or that refuses the credentials. Only the servers you name
are contacted (default: loopback).

https servers are verified against the system's certificate store, or against --ca-bundle FILE for a
server with its own certificate; a certificate that does not verify stops the run. --header (repeatable)
and the environment variable VAP_BATCH_TOKEN (sent as "Authorization: Bearer <token>") go with every
request to every server and the websocket handshakes, and are never printed or written to OUT. Prefer the variable for a
token: a command line is visible to other users of the machine.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
from pathlib import Path

from .client import ComfyClient, OutputError, ServerError
from .contact_sheet import ContactSheet
from .jobs import JobError, read_jobs
from .runner import run_jobs
from .workflow import DEFAULT_WORKFLOW, WorkflowError, check_workflow, load_workflow

DEFAULT_SERVER = "http://127.0.0.1:8188"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vap_batch", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("jobs", help="the job list, .csv or .json")
    parser.add_argument("--out", required=True, help="folder for the videos and report.json")
    parser.add_argument("--server", action="append", metavar="URL",
                        help=f"ComfyUI's address (default: {DEFAULT_SERVER}); repeat it to share the jobs among "
                             "several servers")
    parser.add_argument("--ca-bundle", metavar="FILE",
                        help="trust the certificates in this PEM file (a server's own, self-signed one) instead of the "
                             "system's store")
    parser.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                        help="an HTTP header for every request and the websocket handshake, e.g. a reverse proxy's "
                             "token (repeatable; $VAP_BATCH_TOKEN is sent as 'Authorization: Bearer <token>')")
    parser.add_argument("--workflow", default=str(DEFAULT_WORKFLOW), help="API-format workflow (default: the pack's)")
    parser.add_argument("--retries", type=int, default=3,
                        help="retries of a job on connection errors or when the server lost it (default: 3)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one job may take (default: 3600)")
    parser.add_argument("--no-html", action="store_true", help="do not write the contact sheet OUT/index.html")
    args = parser.parse_args(argv)
    try:
        jobs = read_jobs(args.jobs)
        workflow = load_workflow(args.workflow)
        check_workflow(jobs, workflow, args.workflow)
        headers = request_headers(args.header, os.environ.get("VAP_BATCH_TOKEN"))
        clients = [ComfyClient(url, headers, args.ca_bundle) for url in servers(args.server)]
    except (JobError, WorkflowError, HeaderError, ServerError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        sheet = None if args.no_html else ContactSheet(Path(args.out), jobs, ", ".join(c.url for c in clients), workflow)
        results = asyncio.run(_run(jobs, clients, workflow, Path(args.out), args.retries, args.timeout, sheet))
    except OutputError as err:
        print(f"\nerror: {err}", file=sys.stderr)
        return 2
    except ServerError as err:
        print(f"\nerror: {err} The run stopped; nothing more was queued.", file=sys.stderr)
        return 2
    print(f"\n{'row':>4}  {'status':<8} {'seconds':>8}  name / output or message")
    for r in results:
        print(f"{r.row:>4}  {r.status:<8} {r.seconds:>8.1f}  {r.name}: {r.output or r.message}")
    print_throughput(results, [c.url for c in clients])
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "failed", "skipped")}
    print(f"\n{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped; report: "
          f"{Path(args.out) / 'report.json'}" + ("" if args.no_html else f", contact sheet: {Path(args.out) / 'index.html'}"))
    return 1 if counts["failed"] else 0


async def _run(jobs, clients: list[ComfyClient], workflow, out_dir: Path, retries: int, timeout: float, sheet):
    async with contextlib.AsyncExitStack() as stack:
        for client in clients:
            await stack.enter_async_context(client)
        return await run_jobs(jobs, clients, workflow, out_dir, retries, timeout, sheet=sheet)


def servers(urls: list[str] | None) -> list[str]:
    """The --server addresses (the default if none), each once."""
    urls = [url.rstrip("/") for url in urls or [DEFAULT_SERVER]]
    repeated = sorted({u for u in urls if urls.count(u) > 1})
    if repeated:
        raise ServerError(f"--server {repeated[0]} is given twice; name each server once (it runs one job at a time).")
    return urls


def print_throughput(results, urls: list[str]):
    """Per server: the rows it finished (ok or failed) and the seconds they took."""
    print(f"\n{'server':<32} {'jobs':>5} {'seconds':>9} {'s/job':>7}")
    for url in urls:
        ran = [r for r in results if r.server == url]
        seconds = sum(r.seconds for r in ran)
        print(f"{url:<32} {len(ran):>5} {seconds:>9.1f} {seconds / len(ran) if ran else 0:>7.1f}")


class HeaderError(ValueError):
    """A --header is not 'Name: value'."""


def request_headers(header_args: list[str], token: str | None) -> dict:
    """The headers to send: 'Authorization: Bearer <token>' for a token, then each 'Name: value' given
    (one replaces an earlier one of the same name). Errors never show a value: it may be a secret."""
    headers = {"Authorization": f"Bearer {token.strip()}"} if token and token.strip() else {}
    for number, header in enumerate(header_args, 1):
        name, colon, value = (part.strip() for part in header.partition(":"))
        if not colon or not value or not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name):
            raise HeaderError(f"--header number {number} is not 'Name: value' (a name, a colon, then the value; "
                              "the value is not shown here).")
        if "\r" in value or "\n" in value:
            raise HeaderError(f"--header {name}: the value holds a line break.")
        headers = {k: v for k, v in headers.items() if k.lower() != name.lower()}
        headers[name] = value
    return headers

if __name__ == "__main__":
    sys.exit(main())
