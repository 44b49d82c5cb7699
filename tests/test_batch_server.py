"""The batch runner against a stand-in for ComfyUI's HTTP API on a loopback port: a server restart
that loses the job, output folders that cannot be written, a bad job list. (The real ComfyUI run is
tests/test_comfyui.py::test_batch_runner_end_to_end_with_a_bad_row_and_a_resumed_run.)"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vap_batch.__main__ import main
from vap_batch.client import ComfyClient
from vap_batch.jobs import read_jobs
from vap_batch.runner import Progress, run_jobs
from vap_batch.workflow import load_workflow

HEADER = "name,reference,target,reference_caption,target_caption"
VIDEO = b"the video's bytes"


class FakeComfy(ThreadingHTTPServer):
    """The routes vap_batch uses, answering as ComfyUI 0.3.64's server.py does. Its websocket closes
    right after the handshake, as a restarting server's does. The first `lose` prompts then vanish
    (in neither queue nor history, as after a restart); the others run for `runs_for` history polls,
    then finish with a video."""

    def __init__(self, lose=0, runs_for=2):
        super().__init__(("127.0.0.1", 0), Handler)
        self.lose, self.runs_for = lose, runs_for
        self.prompts, self.running, self.history = [], {}, {}
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: FakeComfy

    def log_message(self, *args):
        pass

    def answer(self, body, status=200):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        s = self.server
        if self.path == "/upload/image":
            name = re.search(rb'name="image"; filename="([^"]+)"', body).group(1).decode()
            return self.answer({"name": name, "subfolder": "vap_batch", "type": "input"})
        assert self.path == "/prompt", self.path
        graph = json.loads(body)["prompt"]
        s.prompts.append(graph)
        prompt_id = f"prompt-{len(s.prompts)}"
        if len(s.prompts) > s.lose:
            s.running[prompt_id] = [s.runs_for, graph["19"]["inputs"]["filename_prefix"]]
        self.answer({"prompt_id": prompt_id, "number": len(s.prompts), "node_errors": {}})

    def do_GET(self):
        s = self.server
        if self.path.startswith("/ws"):
            accept = base64.b64encode(hashlib.sha1((self.headers["Sec-WebSocket-Key"] +
                                                    "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept.decode())
            self.end_headers()
            self.close_connection = True
        elif self.path == "/queue":  # [number, prompt_id, prompt, extra_data, outputs_to_execute] per prompt
            self.answer({"queue_running": [[1, p, {}, {}, ["19"]] for p in s.running], "queue_pending": []})
        elif self.path.startswith("/history/"):
            prompt_id = self.path.rsplit("/", 1)[1]
            if prompt_id in s.running:
                s.running[prompt_id][0] -= 1
                if s.running[prompt_id][0] <= 0:  # leaves the queue for the history in one step, as in ComfyUI
                    subfolder, stem = s.running.pop(prompt_id)[1].split("/")
                    s.history[prompt_id] = {
                        "status": {"status_str": "success", "completed": True, "messages": []},
                        "outputs": {"19": {"images": [{"filename": f"{stem}_00001_.mp4", "subfolder": subfolder,
                                                       "type": "output"}], "animated": [True]}}}
            self.answer({prompt_id: s.history[prompt_id]} if prompt_id in s.history else {})
        elif self.path.startswith("/view?"):
            self.answer(VIDEO)
        else:
            self.answer({"error": self.path}, 404)


@pytest.fixture
def fake():
    server = FakeComfy()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def job_list(tmp_path, *rows) -> Path:
    for name in ("r.mp4", "t.png"):
        (tmp_path / name).write_bytes(b"media")
    path = tmp_path / "jobs.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def run(tmp_path, fake, *names, retries=1):
    jobs = read_jobs(job_list(tmp_path, *(f"{n},r.mp4,t.png,x,y" for n in names)))
    log = io.StringIO()
    results = run_jobs(jobs, ComfyClient(fake.url), load_workflow(), tmp_path / "out", retries=retries, job_timeout=5,
                       progress=Progress(len(jobs), stream=log))
    return results, log.getvalue()


def test_a_prompt_lost_in_a_server_restart_is_queued_again(tmp_path, fake):
    fake.lose = 1
    results, log = run(tmp_path, fake, "one")
    assert [(r.status, r.message) for r in results] == [("ok", "")]
    assert len(fake.prompts) == 2  # the lost one, then once more; while running it was waited for, not queued again
    assert (tmp_path / "out" / "one.mp4").read_bytes() == VIDEO
    assert "the server lost prompt prompt-1 (it is neither queued nor in its history: did the server restart?)" in log


def test_a_prompt_lost_every_time_fails_its_row_after_the_retries(tmp_path, fake):
    fake.lose = 99
    results, _ = run(tmp_path, fake, "one", "two", retries=1)
    assert [r.status for r in results] == ["failed", "failed"] and len(fake.prompts) == 4
    assert results[0].message == ("the server lost prompt prompt-2 (it is neither queued nor in its history: did the "
                                  "server restart?); gave up after 2 attempts (--retries 1)")


@pytest.fixture
def read_only_folder(tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").touch()
    except PermissionError:
        yield folder
    else:  # root writes there regardless of permissions; sysfs takes no new file, not even from root
        (folder / "probe").unlink()
        yield Path("/sys")
    folder.chmod(0o755)


@pytest.mark.parametrize("kind", ["read-only folder", "a file where a folder should be"])
def test_an_unwritable_output_folder_stops_the_run_before_the_first_job(tmp_path, fake, capsys, kind, request):
    if kind == "read-only folder":
        out = request.getfixturevalue("read_only_folder")
    else:
        (tmp_path / "file").write_text("")
        out = tmp_path / "file" / "out"
    code = main([str(job_list(tmp_path, "one,r.mp4,t.png,x,y")), "--out", str(out), "--server", fake.url])
    assert code == 2 and fake.prompts == []
    assert f"error: cannot write to the output folder {out} (" in capsys.readouterr().err


def test_a_local_write_failure_stops_the_run_without_running_the_job_again(tmp_path, fake, capsys):
    out = tmp_path / "out"
    (out / "one.mp4.partial").mkdir(parents=True)  # the download cannot be written there, not even by root
    code = main([str(job_list(tmp_path, "one,r.mp4,t.png,x,y", "two,r.mp4,t.png,x,y")), "--out", str(out),
                 "--server", fake.url, "--retries", "2"])
    assert code == 2 and len(fake.prompts) == 1  # one ran once; two, which would fail the same way, never ran
    err = capsys.readouterr().err
    assert f"error: cannot write {out / 'one.mp4'} (Is a directory); the job ran and the server keeps its video as " \
           "output/vap_batch/one_00001_.mp4. Fix the output folder and run again (finished rows are skipped)." in err


def test_a_bad_job_list_is_reported_row_by_row_before_anything_is_queued(tmp_path, fake, capsys):
    jobs = job_list(tmp_path, "good,r.mp4,t.png,x,y,,", "values,r.mp4,t.png,x,y,2.7,nan",
                    "shifted,r.mp4,t.png,a horse, rising,a cat,20,4.5")
    jobs.write_text(jobs.read_text().replace(HEADER, HEADER + ",steps,cfg", 1))
    code = main([str(jobs), "--out", str(tmp_path / "out"), "--server", fake.url])
    assert code == 2 and fake.prompts == []
    assert capsys.readouterr().err.splitlines()[1:] == [
        "  row 2: steps='2.7' is not a whole number; cfg='nan' is not a finite number.",
        "  row 3: more fields than the header has columns ('4.5' left over); put text that contains commas in double quotes."]
