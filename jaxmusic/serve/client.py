"""A small standard-library client for `jaxmusic serve` (used by the tests and the load
benchmark; handy for scripts): start a server in a subprocess, upload audio, read JSON.

    with ServeProcess(["--workdir", "runs/demo/cnn_beat_mel"]) as server:
        status, answer = post_audio(server.url, "song.wav")
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Sequence


def multipart_body(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """``(body, content_type)`` of a multipart/form-data request."""
    boundary = uuid.uuid4().hex
    out = []
    for k, v in fields.items():
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    for k, (name, data) in files.items():
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{name}"\r\n'
                   "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


def request_json(url: str, data: bytes | None = None, content_type: str | None = None,
                 timeout: float = 300) -> tuple[int, dict]:
    """``(status, JSON body)`` of a GET (no ``data``) or POST; 4xx/5xx are returned, not raised."""
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def post_audio(url: str, path: str | Path | None = None, *, name: str | None = None, data: bytes | None = None,
               query: str = "", timeout: float = 300, **fields) -> tuple[int, dict]:
    """``POST {url}/api/predict`` with the file at ``path`` (or ``data`` named ``name``)
    and form ``fields`` (``model``, ``top_k``, ``spectrogram``)."""
    files = {}
    if path is not None or data is not None:
        files["file"] = (name or Path(path).name, data if data is not None else Path(path).read_bytes())
    body, kind = multipart_body({k: str(v) for k, v in fields.items()}, files)
    return request_json(f"{url.rstrip('/')}/api/predict{query}", body, kind, timeout)


def peak_rss_growth_mb(pid: int, action) -> tuple[float, object]:
    """``(MB by which action() raised process pid's peak RSS above its RSS before it,
    action's result)``: the peak is reset first (Linux: ``/proc/PID/clear_refs``), then
    read (``VmHWM``). For a server this machine started, e.g. ``ServeProcess.proc.pid``."""
    def kb(key: str) -> int:
        line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith(key))
        return int(line.split()[1])

    Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = kb("VmRSS:")
    result = action()
    return (kb("VmHWM:") - before) / 1024, result


class ServeProcess:
    """``jaxmusic serve ARGS --port 0`` in a subprocess; ``url`` once it is listening.

    The server's output is kept in ``lines`` (a thread drains it)."""

    def __init__(self, args: Sequence[str], *, env: dict | None = None, cwd: str | Path | None = None,
                 start_timeout: float = 300):
        args = list(args)
        if "--port" not in args:
            args += ["--port", "0"]
        self.proc = subprocess.Popen([sys.executable, "-m", "jaxmusic", "serve", *args], cwd=cwd,
                                     env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.url: str | None = None
        ready = threading.Event()

        def drain():
            for line in self.proc.stdout:
                self.lines.append(line)
                found = re.search(r"jaxmusic serve: (http://\S+?)/? ", line)
                if found and self.url is None:
                    self.url = found.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(timeout=start_timeout) or self.url is None:
            self.stop()
            raise RuntimeError("jaxmusic serve did not start:\n" + "".join(self.lines[-40:]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "ServeProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
