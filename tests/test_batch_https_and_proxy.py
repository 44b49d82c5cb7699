"""The batch runner against the real ComfyUI with the tiny models, served over https (ComfyUI's own
--tls-certfile/--tls-keyfile, a throwaway self-signed certificate) and reached directly or through a
reverse proxy in front of it (http and https) that wants a token: --ca-bundle and a certificate that
does not verify, --header and VAP_BATCH_TOKEN and a server that refuses without them, a websocket
dropped mid-job, prompts lost as in a server restart, output folders that cannot be written, a bad
job list, rows with reference guidance and a second reference. The plain-http run against ComfyUI itself is
tests/test_comfyui.py::test_batch_runner_end_to_end_with_a_bad_row_and_a_resumed_run."""
from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import aiohttp
import av
import numpy as np
import pytest
from aiohttp import web

from devkit import comfy_server as harness
from devkit.clips import write_clip
from vap_batch.__main__ import main
from vap_batch.client import ComfyClient, ServerError
from vap_batch.jobs import read_jobs
from vap_batch.report import Progress
from vap_batch.runner import run_jobs

HEADER = "name,reference,target,reference_caption,target_caption,seed"
TOKEN = f"token-{uuid.uuid4().hex}"  # random, so that finding it anywhere means it leaked


class Proxy:
    """A reverse proxy on loopback in front of the ComfyUI server, for HTTP and its websocket, as people
    put in front of a rented GPU. It listens on https (the same throwaway certificate) and on http, and
    answers 401 to any request (the websocket handshake too) without 'Authorization: Bearer TOKEN',
    which it does not pass on. It can also drop the progress websocket after the first sampling step
    (drop_websocket), and play a server that restarted right after taking a prompt (lose: the next so
    many POST /prompt are answered here with an id the ComfyUI behind never saw, and the websockets
    are closed)."""

    def __init__(self, upstream: str, certificate: tuple[Path, Path]):
        self.upstream, self.certificate = upstream, certificate
        self.prompts = self.refused = self.websockets = self.lose = self.uploads = 0
        self.drop_websocket, self.dropped, self.sockets = False, False, set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.https, self.http = self._do(self._start())

    def _do(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def reset(self):
        self.prompts = self.refused = self.websockets = self.lose = self.uploads = 0
        self.drop_websocket = self.dropped = False

    async def _start(self) -> list[str]:
        cert, key = self.certificate
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=cert)))
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert, key)
        urls = []
        for scheme, context in (("https", tls), ("http", None)):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            await web.SockSite(self.runner, sock, ssl_context=context).start()
            urls.append(f"{scheme}://127.0.0.1:{sock.getsockname()[1]}")
        return urls

    def stop(self):
        self._do(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _stop(self):
        await self.runner.cleanup()
        await self.session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.refused += 1
            return web.Response(status=401, text="401: Unauthorized")
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self.websocket(request)
        body = await request.read()
        self.uploads += request.method == "POST" and request.path == "/upload/image"
        if request.method == "POST" and request.path == "/prompt":
            self.prompts += 1
            if self.lose:
                self.lose -= 1
                for ws in list(self.sockets):
                    await ws.close()
                return web.json_response({"prompt_id": f"lost-{self.prompts}", "number": 0, "node_errors": {}})
        async with self.session.request(request.method, self.upstream + str(request.rel_url), data=body,
                                        headers=_content_type(request.headers)) as answer:
            return web.Response(status=answer.status, body=await answer.read(), headers=_content_type(answer.headers))

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        self.websockets += 1
        client = web.WebSocketResponse()
        await client.prepare(request)
        self.sockets.add(client)
        try:
            async with self.session.ws_connect(self.upstream + str(request.rel_url)) as server:
                pumps = [asyncio.ensure_future(_pump(server, client, self._drop_now)), asyncio.ensure_future(_pump(client, server))]
                _, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
        finally:
            self.sockets.discard(client)
            await client.close()
        return client

    def _drop_now(self, message) -> bool:
        """Whether to drop the websocket after passing this message on: the first sampling step, mid-job."""
        if self.drop_websocket and message.type == aiohttp.WSMsgType.TEXT and json.loads(message.data)["type"] == "progress":
            self.drop_websocket, self.dropped = False, True
            return True
        return False


def _content_type(headers) -> dict:
    return {k: v for k, v in headers.items() if k.lower() == "content-type"}


async def _pump(source, dest, stop=lambda message: False):
    async for message in source:
        await _send(dest, message)
        if stop(message):
            return


async def _send(ws, message):
    if message.type == aiohttp.WSMsgType.TEXT:
        await ws.send_str(message.data)
    elif message.type == aiohttp.WSMsgType.BINARY:
        await ws.send_bytes(message.data)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command (Debian package openssl) to make the test certificate")
    return harness.self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_server(comfy, certificate, tmp_path_factory):
    """The real ComfyUI with the pack and the tiny models, serving https with the throwaway certificate."""
    root, python, base = comfy
    own = harness.sharing_base(base, tmp_path_factory.mktemp("tls_base"), "models", "custom_nodes", "input")
    server = harness.Server(root, python, own, tls=certificate)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def module_proxy(tls_server, certificate):
    proxy = Proxy(tls_server.url, certificate)
    yield proxy
    proxy.stop()


@pytest.fixture
def proxy(module_proxy):
    module_proxy.reset()
    return module_proxy


def job_list(media: Path, *names: str, seed: int = 1) -> Path:
    """Jobs on the tiny media; the same seed as an earlier job's gives ComfyUI's cached result (a new one samples)."""
    path = media / "jobs.csv"
    path.write_text("\n".join([HEADER, *(f"{n},ref.mp4,target.png,a sneaker inflates,a horse inflates,{seed}"
                                        for n in names)]) + "\n")
    return path


def batch(media: Path, out: Path, server: str, *args: str, token: str | None = None) -> subprocess.CompletedProcess:
    """python -m vap_batch on one job, 'one' (the token, if any, in VAP_BATCH_TOKEN)."""
    env = {k: v for k, v in os.environ.items() if k != "VAP_BATCH_TOKEN"}
    if token is not None:
        env["VAP_BATCH_TOKEN"] = token
    command = [sys.executable, "-m", "vap_batch", str(job_list(media, "one")), "--out", str(out), "--server", server,
               "--workflow", str(media / "workflow.json"), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=harness.ROOT, env=env, timeout=600)


def assert_one_video(out: Path):
    assert [r["status"] for r in json.loads((out / "report.json").read_text())] == ["ok"]
    with av.open(str(out / "one.mp4")) as video:
        assert len(list(video.decode(video=0))) == 9


def assert_nowhere(secret: str, run: subprocess.CompletedProcess, out: Path):
    assert secret not in run.stdout and secret not in run.stderr
    for path in out.rglob("*"):
        assert not path.is_file() or secret.encode() not in path.read_bytes(), path


def history_size(server: harness.Server) -> int:
    return len(server.get("/history"))


# ---------------------------------------------------------------- https, certificates

def test_a_certificate_that_does_not_verify_stops_the_run_before_anything_is_queued(tls_server, certificate, media,
                                                                                      tmp_path):
    before = history_size(tls_server)
    run = batch(media, tmp_path / "out", tls_server.url)
    assert run.returncode == 2, run.stdout + run.stderr
    assert (f"error: the certificate of {tls_server.url} does not verify (self-signed certificate). If the server has "
            "its own (self-signed) certificate, pass it with --ca-bundle FILE (PEM). The run stopped; nothing more was "
            "queued.") in run.stderr
    assert history_size(tls_server) == before and tls_server.get("/queue")["queue_pending"] == []

    run = batch(media, tmp_path / "out", tls_server.url, "--ca-bundle", str(certificate[0]))
    assert run.returncode == 0, run.stdout + run.stderr
    assert_one_video(tmp_path / "out")
    assert history_size(tls_server) == before + 1


# ---------------------------------------------------------------- a reverse proxy that wants a token

@pytest.mark.parametrize("how", ["--header over https", "VAP_BATCH_TOKEN over http"])
def test_through_a_proxy_with_the_token_every_request_carries_it_and_it_is_written_nowhere(
        proxy, certificate, media, tmp_path, how):
    out = tmp_path / "out"
    if how == "--header over https":
        run = batch(media, out, proxy.https, "--ca-bundle", str(certificate[0]), "--header", f"Authorization: Bearer {TOKEN}")
    else:
        run = batch(media, out, proxy.http, token=TOKEN)
    assert run.returncode == 0, run.stdout + run.stderr
    assert_one_video(out)
    assert proxy.refused == 0 and proxy.prompts == 1 and proxy.websockets == 1  # the websocket handshake carried it too
    assert_nowhere(TOKEN, run, out)


def test_without_the_token_the_run_stops_clearly_and_queues_nothing(proxy, media, tmp_path):
    run = batch(media, tmp_path / "out", proxy.http)
    assert run.returncode == 2, run.stdout + run.stderr
    assert (f"error: the server at {proxy.http} refused the request (401 Unauthorized): it wants credentials. Pass them "
            "with --header 'Name: value', or set VAP_BATCH_TOKEN to send 'Authorization: Bearer <token>'.") in run.stderr
    wrong = f"wrong-{TOKEN}"
    run = batch(media, tmp_path / "out", proxy.http, token=wrong)
    assert run.returncode == 2 and "it wants credentials (sent: Authorization; the values are not shown)" in run.stderr
    assert_nowhere(wrong, run, tmp_path / "out")
    assert proxy.prompts == 0 and proxy.refused == 2

    async def handshake():  # the websocket's refusal reads the same
        async with ComfyClient(proxy.http) as client:
            await client.websocket()
    with pytest.raises(ServerError, match=r"refused the request \(401 Unauthorized\): it wants credentials"):
        asyncio.run(handshake())


# ---------------------------------------------------------------- the progress stream and lost prompts

def run_in_process(proxy, certificate, media, out, *names, retries=1, seed=1) -> tuple[list, str]:
    jobs = read_jobs(job_list(media, *names, seed=seed))
    log = io.StringIO()

    async def go():
        async with ComfyClient(proxy.https, {"Authorization": f"Bearer {TOKEN}"}, certificate[0]) as client:
            return await run_jobs(jobs, [client], json.loads((media / "workflow.json").read_text()), out, retries=retries,
                                  job_timeout=300, progress=Progress(len(jobs), stream=log))
    return asyncio.run(go()), log.getvalue()


def test_prompts_lost_in_a_server_restart_are_queued_again_until_the_retries_run_out(proxy, certificate, media, tmp_path):
    proxy.lose = 3  # row one: lost twice (gives up after 2 attempts); row two: lost once, then runs
    results, log = run_in_process(proxy, certificate, media, tmp_path / "out", "one", "two", retries=1)
    assert [r.status for r in results] == ["failed", "ok"] and proxy.prompts == 4
    assert results[0].message == ("the server lost prompt lost-2 (it is neither queued nor in its history: did the "
                                  "server restart?); gave up after 2 attempts (--retries 1)")
    assert "row 1 one on " not in log  # with a single server, its address is not repeated
    assert "row 1 one: the server lost prompt lost-1 (it is neither queued nor in its history: did the server " \
           "restart?); back in the list after attempt 1 of 2; trying again in 1 s" in log
    assert (tmp_path / "out" / "two.mp4").is_file() and not (tmp_path / "out" / "one.mp4").exists()


# ---------------------------------------------------------------- output folders, job lists

def run_main(media, out, proxy, *names, args=()) -> int:
    return main([str(job_list(media, *names)), "--out", str(out), "--server", proxy.http,
                 "--workflow", str(media / "workflow.json"), *args])


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


@pytest.fixture
def with_token(monkeypatch):
    monkeypatch.setenv("VAP_BATCH_TOKEN", TOKEN)


@pytest.mark.parametrize("kind", ["read-only folder", "a file where a folder should be"])
def test_an_unwritable_output_folder_stops_the_run_before_the_first_job(proxy, media, tmp_path, capsys, with_token,
                                                                         kind, request):
    if kind == "read-only folder":
        out = request.getfixturevalue("read_only_folder")
    else:
        (tmp_path / "file").write_text("")
        out = tmp_path / "file" / "out"
    assert run_main(media, out, proxy, "one") == 2 and proxy.prompts == 0
    assert f"error: cannot write to the output folder {out} (" in capsys.readouterr().err


def test_a_local_write_failure_stops_the_run_without_running_the_job_again(proxy, media, tmp_path, capsys, with_token):
    out = tmp_path / "out"
    (out / "unwritable.mp4.partial").mkdir(parents=True)  # the download cannot be written there, not even by root
    assert run_main(media, out, proxy, "unwritable", "two", args=("--retries", "2")) == 2
    assert proxy.prompts == 1  # one ran once; two, which would fail the same way, never ran
    err = capsys.readouterr().err
    assert f"error: cannot write {out / 'unwritable.mp4'} (Is a directory); the job ran and the server keeps its video " \
           "as output/vap_batch/unwritable_00001_.mp4. Fix the output folder and run again (finished rows are skipped)." in err


def test_a_bad_job_list_is_reported_row_by_row_before_anything_is_queued(proxy, media, tmp_path, capsys, with_token):
    jobs = media / "bad.csv"
    jobs.write_text(f"{HEADER},steps,cfg\none,ref.mp4,target.png,x,y,1,,\nvalues,ref.mp4,target.png,x,y,1,2.7,nan\n"
                    "shifted,ref.mp4,target.png,a horse, rising,a cat,1,20,4.5\n")
    code = main([str(jobs), "--out", str(tmp_path / "out"), "--server", proxy.http])
    assert code == 2 and proxy.prompts == 0
    assert capsys.readouterr().err.splitlines()[1:] == [
        "  row 2: steps='2.7' is not a whole number; cfg='nan' is not a finite number.",
        "  row 3: more fields than the header has columns ('4.5' left over); put text that contains commas in double quotes."]


# last of the jobs that run: its new seed makes the server sample again, and it caches only the latest prompt
def test_a_websocket_dropped_mid_job_ends_with_the_jobs_result_not_a_new_prompt(proxy, certificate, media, tmp_path):
    proxy.drop_websocket = True
    seed = uuid.uuid4().int % 2**32  # a job the server has not run yet: it samples, and reports its steps
    results, log = run_in_process(proxy, certificate, media, tmp_path / "out", "one", seed=seed)
    assert proxy.dropped and [(r.status, r.message) for r in results] == [("ok", "")], log
    assert proxy.prompts == 1
    assert "lost the progress stream (the server closed the websocket); waiting for the result" in log
    assert_one_video(tmp_path / "out")


# ---------------------------------------------------------------- reference guidance and a second reference

def write_stripes(path: Path, frames: int = 12) -> Path:
    """A small clip of moving stripes (another reference than the tiny one)."""
    images = [np.zeros((64, 64, 3), dtype=np.uint8) for _ in range(frames)]
    for i, image in enumerate(images):
        image[:, (4 * i) % 64:(4 * i) % 64 + 16] = 255
    return write_clip(path, images, "mpeg4", fps=8)


def test_rows_with_reference_guidance_and_a_second_reference_make_videos_on_the_real_server(
        proxy, tls_server, media, tmp_path, capsys, with_token):
    write_stripes(media / "lantern.mp4")
    jobs = media / "features.csv"
    jobs.write_text("name,reference,target,reference_caption,target_caption,seed,reference_cfg,reference_2,"
                    "reference_2_caption\n"
                    "guided,ref.mp4,target.png,a sneaker inflates,a horse inflates,21,2.5,,\n"
                    "two,ref.mp4,target.png,a sneaker inflates,a horse inflates,22,,lantern.mp4,a lantern swells\n"
                    "both,ref.mp4,target.png,a sneaker inflates,a horse inflates,23,2.5,lantern.mp4,a lantern swells\n")
    out = tmp_path / "out"
    assert main([str(jobs), "--out", str(out), "--server", proxy.http, "--workflow", str(media / "workflow.json")]) == 0
    for name in ("guided", "two", "both"):
        with av.open(str(out / f"{name}.mp4")) as video:
            assert len(list(video.decode(video=0))) == 9
    assert proxy.uploads == 3  # the reference, the target and the second reference, each once
    graphs = {entry["prompt"][2]["19"]["inputs"]["filename_prefix"]: entry["prompt"][2]
              for entry in tls_server.get("/history").values()}
    guided, two, both = (graphs[f"vap_batch/{name}"] for name in ("guided", "two", "both"))
    for graph, seed in ((guided, 21), (both, 23)):  # the guider, with the row's seed on the RandomNoise
        assert graph["16"]["class_type"] == "VAPReferenceGuider" and graph["16"]["inputs"]["reference_cfg"] == 2.5
        assert graph["21"]["inputs"]["noise_seed"] == seed and graph["17"]["inputs"]["samples"] == ["24", 0]
    assert two["16"]["class_type"] == "KSampler" and two["16"]["inputs"]["seed"] == 22
    for graph in (two, both):  # the second reference, uploaded under its content's name, conditions the sampler
        assert graph["25"]["inputs"]["video"].startswith("vap_batch/") and graph["25"]["inputs"]["video"].endswith(
            "_lantern.mp4") and graph["26"]["inputs"]["text"] == "a lantern swells"
        assert graph["16"]["inputs"]["positive"] == ["28", 0] and graph["28"]["inputs"]["positive"] == ["15", 0]
    assert "25" not in guided and "21" not in two
    html = (out / "index.html").read_text()
    assert html.count('src="../media/lantern.mp4"') == 2 and html.count("<b>reference 2:</b> a lantern swells") == 2
