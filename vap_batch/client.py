"""A ComfyUI client on aiohttp (ComfyUI's own HTTP stack): its HTTP API and its progress websocket,
over http or https (the system's certificate store, or a CA bundle), with extra headers (a reverse
proxy's token) on every request and on the websocket handshake."""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import ssl
import uuid
from http import HTTPStatus
from pathlib import Path

import aiohttp

from vap_core.whole_file import write_whole


class PromptRefused(Exception):
    """The server refused the prompt (validation); the message is the server's."""


class OutputError(Exception):
    """A file cannot be written here (permissions, disk full): a local problem, never a reason to run the
    job on the server again. Not an OSError, so that it is not taken for a connection problem."""


class ServerError(Exception):
    """The server cannot be used at all (its certificate does not verify, it wants credentials): every
    job would fail the same way, so a run stops. Not an OSError, so that it is never retried."""


class BadAnswer(Exception):
    """The server answered with an error status: not a connection problem, so not retried."""


# what may pass if tried again later: the server restarting, the network dropping
QUICK = 5  # seconds for the small answers a live server gives at once (a job's /queue and /history/ID polls)
TRANSIENT = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError, ConnectionError,
             TimeoutError, OSError)


def tls_context(ca_bundle: str | os.PathLike | None = None) -> ssl.SSLContext:
    """Verifying TLS: the system's certificate store, or (ca_bundle) only the certificates of that PEM file."""
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except OSError as err:  # ssl.SSLError (no certificate in it) is an OSError too
        raise ServerError(f"cannot use --ca-bundle {ca_bundle} ({getattr(err, 'strerror', None) or err}); give the "
                          "server's certificate (or the CA that signed it) as a PEM file.") from None


class ComfyClient:
    """One ComfyUI server. Use it as `async with ComfyClient(url) as client:` (or open() and close())."""

    def __init__(self, url: str, headers=None, ca_bundle=None, timeout: float = 15):
        if not url.startswith(("http://", "https://")):
            raise ServerError(f"--server {url}: give the server's address as http://HOST:PORT or https://HOST:PORT.")
        self.url = url.rstrip("/")
        self.headers = dict(headers or {})  # never printed: they may hold a token
        self.tls = tls_context(ca_bundle)
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex
        self.session: aiohttp.ClientSession | None = None
        self._uploaded: dict[tuple[str, str], str] = {}  # (content hash, subfolder) -> the server's name for it

    async def open(self):
        # a timeout per connect and per read (as a socket timeout), none on the whole: a large download may be slow;
        # a server that takes connections but never answers (hung) is given up about as fast as a dead one
        self.session = aiohttp.ClientSession(
            headers=self.headers, connector=aiohttp.TCPConnector(ssl=self.tls),
            timeout=aiohttp.ClientTimeout(total=None, connect=self.timeout, sock_read=self.timeout))

    async def close(self):
        if self.session is not None:
            await self.session.close()

    async def __aenter__(self):
        await self.open()
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def _request(self, method: str, path: str, expect=(200,), **kwargs) -> tuple[int, bytes]:
        """(status, body) of a request; a status outside `expect` raises BadAnswer, 401 and 403 ServerError."""
        try:
            async with self.session.request(method, self.url + path, **kwargs) as response:
                body = await response.read()
        except aiohttp.ClientSSLError as err:
            raise ServerError(self._tls_problem(err)) from None
        if response.status in (401, 403):
            raise ServerError(self._refused(response.status))
        if response.status not in expect:
            raise BadAnswer(f"the server answered {response.status} {response.reason} to {method} {path}: "
                            f"{body[:500].decode(errors='replace')}")
        return response.status, body

    def _tls_problem(self, err: aiohttp.ClientSSLError) -> str:
        if isinstance(err, aiohttp.ClientConnectorCertificateError):
            why = getattr(err.certificate_error, "verify_message", None) or err.certificate_error
            return (f"the certificate of {self.url} does not verify ({why}). If the server has its own (self-signed) "
                    "certificate, pass it with --ca-bundle FILE (PEM).")
        return f"no TLS connection to {self.url} ({err}); is it an https server?"

    def _refused(self, status: int) -> str:
        sent = f" (sent: {', '.join(self.headers)}; the values are not shown)" if self.headers else ""
        return (f"the server at {self.url} refused the request ({status} {HTTPStatus(status).phrase}): it wants "
                f"credentials{sent}. "
                "Pass them with --header 'Name: value', or set VAP_BATCH_TOKEN to send 'Authorization: Bearer <token>'.")

    async def get_json(self, path: str, timeout: float | None = None):
        """GET path's JSON answer; `timeout`: seconds for the whole request, for answers a live server gives at once."""
        _, body = await self._request("GET", path, **({"timeout": aiohttp.ClientTimeout(total=timeout)} if timeout else {}))
        return json.loads(body)

    async def post_json(self, path: str, payload: dict, expect=(200,)) -> tuple[int, dict]:
        """(status, JSON answer) of a POST with a JSON body."""
        status, body = await self._request("POST", path, expect, json=payload)
        return status, json.loads(body or b"{}")

    async def upload(self, path: Path, subfolder: str = "vap_batch") -> str:
        """Upload a file into the server's input folder, once per content; returns the name nodes refer to it
        by. The name carries a hash of the content, so a rerun reuses it and different files never collide."""
        data = path.read_bytes()
        digest = hashlib.sha1(data).hexdigest()
        if (digest, subfolder) not in self._uploaded:
            # not overwriting: the server keeps a file of the same name and content as it is, so its mtime, and
            # with it the server's cache of the nodes that read it, stay valid across runs
            form = aiohttp.FormData({"type": "input", "subfolder": subfolder})
            form.add_field("image", data, filename=f"{digest[:12]}_{path.name}", content_type="application/octet-stream")
            _, body = await self._request("POST", "/upload/image", data=form)
            answer = json.loads(body)
            name = f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else answer["name"]
            self._uploaded[digest, subfolder] = name
        return self._uploaded[digest, subfolder]

    async def queue(self, graph: dict) -> str:
        status, answer = await self.post_json("/prompt", {"prompt": graph, "client_id": self.client_id}, (200, 400))
        if status == 400:
            raise PromptRefused(_refusal(answer))
        return answer["prompt_id"]

    async def history(self, prompt_id: str) -> dict | None:
        return (await self.get_json(f"/history/{prompt_id}", QUICK)).get(prompt_id)

    async def queued(self, prompt_id: str) -> bool:
        """Whether the prompt is running or waiting; GET /queue lists [number, prompt_id, ...] per prompt."""
        queue = await self.get_json("/queue", QUICK)
        return any(entry[1] == prompt_id for entry in queue.get("queue_running", []) + queue.get("queue_pending", []))

    async def download(self, item: dict, dest: Path):
        """Fetch an output file to dest (through dest.partial, so a cut download is never taken as done)."""
        # read whole (videos are small), so that network and local errors cannot be confused
        _, data = await self._request("GET", "/view", params={k: item.get(k, "") for k in ("filename", "subfolder", "type")})
        try:
            write_whole(dest, lambda partial: partial.write_bytes(data))
        except OSError as err:
            where = "/".join(p for p in (item.get("type", "output"), item.get("subfolder"), item["filename"]) if p)
            raise OutputError(f"cannot write {dest} ({err.strerror or err}); the job ran and the server keeps its "
                              f"video as {where}. Fix the output folder and run again (finished rows are skipped).") from None

    async def websocket(self) -> "Messages":
        """The server's messages to this client (open it before queueing, so that none is missed)."""
        try:
            # the heartbeat (a ping every 5 s, answered by the server's event loop even while it samples) notices a
            # dead or hung server within seconds; a long quiet step is no reason to give up on it
            ws = await self.session.ws_connect(f"{self.url}/ws", params={"clientId": self.client_id}, heartbeat=5,
                                               max_msg_size=64 * 2**20)
        except aiohttp.ClientSSLError as err:
            raise ServerError(self._tls_problem(err)) from None
        except aiohttp.WSServerHandshakeError as err:
            if err.status in (401, 403):
                raise ServerError(self._refused(err.status)) from None
            raise ConnectionError(f"the server refused the websocket (HTTP {err.status})") from None
        return Messages(ws)


class Messages:
    """ComfyUI's status messages on its websocket (JSON text; binary ones, previews, are skipped)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws

    async def receive(self, timeout: float | None = None) -> dict:
        while True:
            message = await self.ws.receive(timeout)
            if message.type == aiohttp.WSMsgType.TEXT:
                return json.loads(message.data)
            if message.type != aiohttp.WSMsgType.BINARY:  # closing, closed, or an error
                raise ConnectionError("the server closed the websocket")

    async def close(self):
        await self.ws.close()


def _refusal(answer: dict) -> str:
    error = answer.get("error", {})
    lines = [error.get("message", "prompt refused")]
    for node, info in answer.get("node_errors", {}).items():
        for e in info.get("errors", []):
            lines.append(f"node {node} ({info.get('class_type')}): {e.get('message')}: {e.get('details')}")
    return "; ".join(lines)
