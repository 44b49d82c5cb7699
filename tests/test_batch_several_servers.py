"""The batch runner sharing one job list among three real ComfyUI servers with the tiny models: the rows
are spread over them and each runs once; a server killed in the middle of a job loses nothing (its job
finishes on another server); a rerun skips every finished row."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from devkit import comfy_server as harness

HEADER = "name,reference,target,reference_caption,target_caption,seed"


@pytest.fixture(scope="module")
def servers(comfy, tmp_path_factory):
    """Three real ComfyUI servers with the pack and the tiny models, started side by side."""
    root, python, base = comfy
    # each its own input, output and history, the models and custom nodes of `base`
    bases = [harness.sharing_base(base, tmp_path_factory.mktemp(f"comfy_base_{i}"), "models", "custom_nodes") for i in (1, 2, 3)]
    with ThreadPoolExecutor(len(bases)) as pool:
        starting = [pool.submit(harness.Server, root, python, b) for b in bases]
    started = [f.result() for f in starting if f.exception() is None]
    try:
        for f in starting:
            f.result()  # a server that did not start fails the tests, with its log
        yield started
    finally:
        for server in started:
            server.stop()


def job_list(media: Path, rows: int) -> tuple[Path, list[str]]:
    """`rows` jobs on the tiny media, each with a new seed, so that every one of them samples."""
    tag = uuid.uuid4().hex[:6]
    names = [f"{tag}_{i}" for i in range(1, rows + 1)]
    seed = uuid.uuid4().int % 2**31
    path = media / "jobs.csv"
    path.write_text("\n".join([HEADER, *(f"{n},ref.mp4,target.png,a sneaker inflates,a horse inflates,{seed + i}"
                                        for i, n in enumerate(names))]) + "\n")
    return path, names


def command(jobs: Path, out: Path, servers) -> list[str]:
    return [sys.executable, "-m", "vap_batch", str(jobs), "--out", str(out), "--workflow",
            str(jobs.parent / "workflow.json"), "--retries", "2", *(a for s in servers for a in ("--server", s.url))]


def ran_on(server: harness.Server, names: list[str]) -> list[str]:
    """The rows of `names` whose prompt the server finished with success (by the output file's prefix)."""
    finished = []
    for entry in server.get("/history").values():
        prefix = entry["prompt"][2]["19"]["inputs"]["filename_prefix"]
        if entry["status"]["status_str"] == "success" and prefix.startswith("vap_batch/"):
            finished += [n for n in names if prefix == f"vap_batch/{n}"]
    return finished


def report(out: Path) -> dict:
    return {r["name"]: r for r in json.loads((out / "report.json").read_text())}


def run_hitting(victim: harness.Server, hit, jobs: Path, out: Path, servers, log_path: Path, wait: float) -> str:
    """python -m vap_batch on the servers; once `victim` runs a job (every server takes one at once),
    hit(victim). The run must end with success within `wait` s; returns its log."""
    log = open(log_path, "w+")
    batch = subprocess.Popen(command(jobs, out, servers), stdout=log, stderr=subprocess.STDOUT, text=True,
                             cwd=harness.ROOT)
    try:
        deadline = time.monotonic() + 300
        while not victim.get("/queue")["queue_running"]:
            assert batch.poll() is None and time.monotonic() < deadline, "the victim never ran a job"
            time.sleep(0.05)
        hit(victim)
        assert batch.wait(wait) == 0
    finally:
        if batch.poll() is None:
            batch.kill()
    log.seek(0)
    return log.read()


def test_rows_are_spread_over_the_servers_each_runs_once_and_a_rerun_skips_them(servers, media, tmp_path):
    jobs, names = job_list(media, 6)
    out = tmp_path / "out"
    run = subprocess.run(command(jobs, out, servers), capture_output=True, text=True, cwd=harness.ROOT, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = report(out)
    assert [rows[n]["status"] for n in names] == ["ok"] * 6
    assert sorted(p.name for p in out.glob("*.mp4")) == sorted(f"{n}.mp4" for n in names)
    for server in servers:  # each took a job at once, and its history holds exactly the rows the report gives it
        mine = sorted(n for n in names if rows[n]["server"] == server.url)
        assert mine and sorted(ran_on(server, names)) == mine, (server.url, mine)
        seconds = sum(rows[n]["seconds"] for n in mine)
        assert f"{server.url:<32} {len(mine):>5} {seconds:>9.1f}" in run.stdout  # the per-server summary

    again = subprocess.run(command(jobs, out, servers), capture_output=True, text=True, cwd=harness.ROOT, timeout=900)
    assert "0 ok, 0 failed, 6 skipped" in again.stdout, again.stdout + again.stderr
    assert sum(len(ran_on(s, names)) for s in servers) == 6  # nothing ran again


def test_a_hung_server_is_given_up_within_seconds_and_its_job_finishes_on_another(servers, media, tmp_path):
    """A server that keeps its connections but never answers (here stopped with SIGSTOP) is noticed by the
    websocket heartbeat and two short polls. Before, it held its job for about 5 minutes (a 30 s heartbeat,
    then 4 polls of 60 s): the run's bound below, which that could not meet, is no speed target."""
    jobs, names = job_list(media, 4)
    out, victim = tmp_path / "out", servers[1]
    try:
        text = run_hitting(victim, lambda server: server.proc.send_signal(signal.SIGSTOP), jobs, out, servers,
                           tmp_path / "batch.log", wait=150)
    finally:
        victim.proc.send_signal(signal.SIGCONT)
    rows = report(out)
    assert [rows[n]["status"] for n in names] == ["ok"] * 4, text
    assert f"on {victim.url}: server unreachable" in text and "back in the list after attempt 1 of 3" in text, text
    assert not any(rows[n]["server"] == victim.url for n in ran_on(servers[0], names) + ran_on(servers[2], names))


# last in the module: it kills a server
def test_a_server_killed_mid_job_loses_nothing_its_job_finishes_on_another(servers, media, tmp_path):
    jobs, names = job_list(media, 6)
    out, victim = tmp_path / "out", servers[-1]
    text = run_hitting(victim, lambda server: server.proc.kill(), jobs, out, servers, tmp_path / "batch.log", wait=900)
    rows = report(out)
    assert [rows[n]["status"] for n in names] == ["ok"] * 6, text
    assert sorted(p.name for p in out.glob("*.mp4")) == sorted(f"{n}.mp4" for n in names)
    assert f"on {victim.url}: server unreachable" in text and "back in the list after attempt 1 of 3" in text, text
    on_victim = [n for n in names if rows[n]["server"] == victim.url]  # finished before the kill, if any
    on_others = ran_on(servers[0], names) + ran_on(servers[1], names)
    assert sorted(on_victim + on_others) == sorted(names), text  # every row exactly once

    again = subprocess.run(command(jobs, out, servers), capture_output=True, text=True, cwd=harness.ROOT, timeout=900)
    assert again.returncode == 0 and "0 ok, 0 failed, 6 skipped" in again.stdout, again.stdout + again.stderr
