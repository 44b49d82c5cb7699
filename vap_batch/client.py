"""A small ComfyUI HTTP + websocket client (standard library only)."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path


class PromptRefused(Exception):
    """The server refused the prompt (validation); the message is the server's."""


class OutputError(Exception):
    """A file cannot be written here (permissions, disk full): a local problem, never a reason to run the
    job on the server again. Not an OSError, so that it is not taken for a connection problem."""


class ComfyClient:
    def __init__(self, url: str, timeout: float = 60):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex

    def _open(self, req):
        return urllib.request.urlopen(req, timeout=self.timeout)

    def get_json(self, path: str):
        with self._open(self.url + path) as r:
            return json.loads(r.read())

    def upload(self, path: Path, subfolder: str = "vap_batch") -> str:
        """Upload a file into the server's input folder; returns the name nodes refer to it by. The name
        carries a hash of the content, so a rerun reuses it and different files never collide."""
        data = path.read_bytes()
        name = f"{hashlib.sha1(data).hexdigest()[:12]}_{path.name}"
        boundary = uuid.uuid4().hex
        parts = [(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n').encode()
                 for k, v in (("type", "input"), ("subfolder", subfolder), ("overwrite", "true"))]
        parts.append((f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
                      "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        req = urllib.request.Request(self.url + "/upload/image", data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        with self._open(req) as r:
            answer = json.loads(r.read())
        return f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else answer["name"]

    def queue(self, graph: dict) -> str:
        req = urllib.request.Request(self.url + "/prompt", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"prompt": graph, "client_id": self.client_id}).encode())
        try:
            with self._open(req) as r:
                return json.loads(r.read())["prompt_id"]
        except urllib.error.HTTPError as err:
            if err.code != 400:
                raise
            raise PromptRefused(_refusal(json.loads(err.read() or b"{}"))) from None

    def history(self, prompt_id: str) -> dict | None:
        return self.get_json(f"/history/{prompt_id}").get(prompt_id)

    def queued(self, prompt_id: str) -> bool:
        """Whether the prompt is running or waiting; GET /queue lists [number, prompt_id, ...] per prompt."""
        queue = self.get_json("/queue")
        return any(entry[1] == prompt_id for entry in queue.get("queue_running", []) + queue.get("queue_pending", []))

    def download(self, item: dict, dest: Path):
        """Fetch an output file to dest (through dest.partial, so a cut download is never taken as done)."""
        query = urllib.parse.urlencode({k: item.get(k, "") for k in ("filename", "subfolder", "type")})
        with self._open(f"{self.url}/view?{query}") as r:
            data = r.read()  # whole (videos are small), so network and local errors cannot be confused
        partial = dest.with_name(dest.name + ".partial")
        try:
            partial.write_bytes(data)
            os.replace(partial, dest)
        except OSError as err:
            where = "/".join(p for p in (item.get("type", "output"), item.get("subfolder"), item["filename"]) if p)
            raise OutputError(f"cannot write {dest} ({err.strerror or err}); the job ran and the server keeps its "
                              f"video as {where}. Fix the output folder and run again (finished rows are skipped).") from None

    def websocket(self) -> "WebSocket":
        return WebSocket(self.url, self.client_id, self.timeout)


def _refusal(answer: dict) -> str:
    error = answer.get("error", {})
    lines = [error.get("message", "prompt refused")]
    for node, info in answer.get("node_errors", {}).items():
        for e in info.get("errors", []):
            lines.append(f"node {node} ({info.get('class_type')}): {e.get('message')}: {e.get('details')}")
    return "; ".join(lines)


class WebSocket:
    """Just enough of RFC 6455 to read ComfyUI's status messages (text frames)."""

    def __init__(self, url: str, client_id: str, timeout: float):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http":
            raise ValueError(f"{url}: only http:// servers are supported")
        self.sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {parts.path.rstrip('/')}/ws?clientId={client_id} HTTP/1.1\r\n"
                           f"Host: {parts.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the server closed the websocket handshake")
            head += chunk
        head, self._buf = head.split(b"\r\n\r\n", 1)
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        if b" 101 " not in head.split(b"\r\n", 1)[0] or accept not in head:
            raise ConnectionError(f"websocket handshake refused: {head.splitlines()[0]!r}")

    def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buf)))
            if not chunk:
                raise ConnectionError("the server closed the websocket")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def receive(self):
        """The next text message as JSON (binary messages, i.e. previews, are skipped)."""
        message, text = b"", False
        while True:
            b0, b1 = self._read(2)
            opcode, length = b0 & 0x0F, b1 & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(length)
            if mask:
                payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
            if opcode == 8:
                raise ConnectionError("the server closed the websocket")
            if opcode == 9:
                self._send(0xA, payload)
                continue
            if opcode in (1, 2):
                message, text = payload, opcode == 1
            elif opcode == 0:
                message += payload
            if b0 & 0x80 and opcode in (0, 1, 2):
                if text:
                    return json.loads(message)
                message = b""

    def _send(self, opcode: int, payload: bytes):
        mask = os.urandom(4)
        masked = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        self.sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def close(self):
        try:
            self._send(8, b"")
        except OSError:
            pass
        self.sock.close()
