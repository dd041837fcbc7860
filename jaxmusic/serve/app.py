"""The web app: one page and a JSON API over trained runs (Starlette, served by uvicorn).

Routes:

* ``GET /``: the page (``static/index.html``; its script and style are served by
  the app, ``/static/app.js`` and ``/static/style.css``: no CDN, no internet);
* ``GET /api/models``: the loaded genre runs (name, labels, view, backbone), the
  emotion run, the default model and the upload limits;
* ``POST /api/predict``: a multipart upload, the audio in field ``file``; optional
  ``model`` (a name from ``/api/models``; default the first ``--workdir``),
  ``top_k`` (a number, or ``all``) and ``spectrogram=1`` (the page's picture),
  as form fields or query parameters. The answer is ``jaxmusic predict --json``'s
  object (``file``, ``genres``, ``emotion``) plus ``model``, ``emotion_model``,
  ``duration_s``, ``windows``, ``flags`` and ``per_window`` (each 30 s window's
  probabilities and emotion values);
* ``GET /api/stats``: what the batchers did (model calls, requests per call) and
  how many predictions are admitted (``queue``).

Every refusal is ``{"error": "<file>: <reason>"}`` with a 4xx status
(:mod:`jaxmusic.serve.analysis`); the body is read in chunks and never kept past
the size limit. Work is split so the event loop never blocks: decoding and the
feature recipe run in a thread pool (``workers``), model calls in each model's
batching thread (:mod:`jaxmusic.serve.batching`). At most ``limits.max_queue``
predictions are admitted at once (their bodies being read, waiting for a worker or
being analysed), each holding at most one saved upload; past that a request is
answered 503 with ``Retry-After`` before its body is kept. A client that goes away
in the middle of its upload is logged (a warning), and its partial body dropped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import dataclasses
import logging
import os
import re
import tempfile
from importlib import resources
from pathlib import Path
from typing import Sequence

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jaxmusic.runs import LoadedRun
from jaxmusic.serve.analysis import Limits, RequestError, analyse, warm_up
from jaxmusic.serve.batching import BatchedRun, Batcher

log = logging.getLogger("jaxmusic.serve")

STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8",
          "index.html": "text/html; charset=utf-8"}
FORM_OVERHEAD = 64 * 1024      # multipart boundaries and headers on top of the file
DRAIN_FACTOR = 4               # an oversized body is read (and dropped) up to this many limits
CHUNK = 1 << 20
SPOOL = CHUNK                  # a body is kept in memory up to this, then on disk
RETRY_AFTER_S = 5              # told to a client refused because the queue is full


@dataclasses.dataclass
class Model:
    name: str
    run: BatchedRun

    def describe(self) -> dict:
        info = self.run.info
        config = self.run.loaded.run.config
        return {"name": self.name, "task": info["task"], "labels": list(info["label_names"]),
                "backbone": info["model"], "set": info["set"], "view": info["view"],
                "beat": bool(info["beat"]), "max_length": int(info["max_length"]),
                "resize": list(config.data.get("resize", ()) or ()) or None}


def _unique_names(workdirs: Sequence[Path]) -> list[str]:
    names: list[str] = []
    for w in workdirs:
        name, k = w.name, 2
        while name in names:
            name, k = f"{w.name}-{k}", k + 1
        names.append(name)
    return names


class Service:
    """The loaded models, their batchers, the worker pool and the limits."""

    def __init__(self, genre: list[Model], emotion: Model | None, limits: Limits, workers: int):
        if not genre:
            raise ValueError("jaxmusic serve needs at least one genre run (--workdir)")
        self.genre = {m.name: m for m in genre}
        self.default = genre[0].name
        self.emotion = emotion
        self.limits = limits
        self.pool = cf.ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="analyse")
        self.admitted = 0   # predictions being read, waiting or analysed (the event loop's count)

    @classmethod
    def load(cls, workdirs: Sequence[str | Path], emotion_workdir: str | Path | None = None, *,
             limits: Limits = Limits(), workers: int = 0, max_batch: int = 16,
             max_wait_s: float = 0.01) -> "Service":
        """Load every run once, compile each model for every batch bucket and run the
        feature recipe once (:func:`~jaxmusic.serve.analysis.warm_up`)."""
        workdirs = [Path(w) for w in workdirs]
        genre = []
        for name, w in zip(_unique_names(workdirs), workdirs):
            loaded = LoadedRun(w)
            if loaded.task.data_kind != "genre":
                raise ValueError(f"{w}: a {loaded.task.name} run; give emotion runs as --emotion-workdir")
            genre.append(Model(name, BatchedRun(Batcher(loaded, max_batch, max_wait_s))))
        emotion = None
        if emotion_workdir:
            loaded = LoadedRun(emotion_workdir)
            if loaded.task.data_kind == "genre":
                raise ValueError(f"{emotion_workdir}: a genre run given as --emotion-workdir")
            emotion = Model(Path(emotion_workdir).name, BatchedRun(Batcher(loaded, max_batch, max_wait_s)))
        for m in genre + ([emotion] if emotion else []):
            m.run.batcher.warm_up()
        warm_up(genre[0].run, emotion.run if emotion else None)
        for m in genre + ([emotion] if emotion else []):
            m.run.batcher.reset_stats()
        return cls(genre, emotion, limits, workers or min(4, os.cpu_count() or 1))

    def describe(self) -> dict:
        return {"models": [m.describe() for m in self.genre.values()], "default": self.default,
                "emotion": self.emotion.describe() if self.emotion else None,
                "limits": self.limits.describe()}

    def stats(self) -> dict:
        """``{"batchers": what each model's batcher did, "queue": the admitted predictions
        and their bound}``."""
        batchers = {name: m.run.batcher.describe() for name, m in self.genre.items()}
        if self.emotion:
            batchers[self.emotion.name] = self.emotion.run.batcher.describe()
        return {"batchers": batchers, "queue": {"admitted": self.admitted, "max_queue": self.limits.max_queue}}

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        for m in list(self.genre.values()) + ([self.emotion] if self.emotion else []):
            m.run.batcher.close()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _read_body(request: Request, limits: Limits) -> tempfile.SpooledTemporaryFile:
    """The request body, spooled to disk past :data:`SPOOL`; 413 once it passes the limit
    (the rest is read and dropped, up to a cap, so the client hears the answer).
    Raises ``ClientDisconnect`` saying how much arrived when the client goes away."""
    cap = limits.max_bytes + FORM_OVERHEAD
    mb = f"{limits.max_bytes / 2**20:g} MB"
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > DRAIN_FACTOR * cap:
        raise RequestError(413, f"upload of {int(declared) / 2**20:.1f} MB is over the {mb} limit (--max-mb)")
    body = tempfile.SpooledTemporaryFile(max_size=SPOOL)
    total, head = 0, b""
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if len(head) < FORM_OVERHEAD:
                head += chunk[: FORM_OVERHEAD - len(head)]
            if total <= cap:
                body.write(chunk)
            elif total > DRAIN_FACTOR * cap:
                break
    except ClientDisconnect:
        body.close()
        of = f" of {int(declared) / 2**20:.1f} MB" if declared and declared.isdigit() else ""
        raise ClientDisconnect(f"{_named(head)}client disconnected after {total / 2**20:.2f} MB{of} "
                               "of its upload") from None
    if total > cap:
        body.close()
        who = _named(head)
        raise RequestError(413, f"{who}upload of {total / 2**20:.1f}{'+' if total > DRAIN_FACTOR * cap else ''} "
                                f"MB is over the {mb} limit (--max-mb)")
    body.seek(0)
    return body


async def _drop_body(request: Request, limits: Limits) -> None:
    """Read a refused request's body (up to the drain cap) and keep none of it, so the
    client hears the answer."""
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > DRAIN_FACTOR * (limits.max_bytes + FORM_OVERHEAD):
                break
    except ClientDisconnect:
        pass


def _named(head: bytes) -> str:
    """``"<file name>: "`` from the start of a multipart body (the part header precedes its data)."""
    found = re.search(rb'filename="([^"\r\n]{1,200})"', head)
    return f"{Path(found.group(1).decode('utf-8', 'replace')).name}: " if found else ""


async def _parse_form(request: Request, body) -> dict:
    """Multipart form of a spooled body (Starlette's parser, fed from the spool)."""
    done = False

    async def replay():
        nonlocal done
        if done:
            return {"type": "http.disconnect"}
        chunk = body.read(CHUNK)
        more = len(chunk) == CHUNK
        done = not more
        return {"type": "http.request", "body": chunk, "more_body": more}

    kind = request.headers.get("content-type", "")
    if not kind.startswith("multipart/form-data"):
        raise RequestError(400, "send the audio as a multipart/form-data upload, field 'file' "
                                f"(got content type {kind or 'none'!r})")
    try:
        return await Request(request.scope, replay).form(max_files=1, max_fields=16)
    except Exception as e:  # MultiPartException, HTTPException(400): malformed form data
        detail = getattr(e, "detail", None) or getattr(e, "message", None) or str(e)
        raise RequestError(400, f"malformed multipart upload: {detail}") from None


def _top_k(raw, labels: int) -> int:
    if raw in (None, ""):
        return 3
    if str(raw).lower() == "all":
        return labels
    try:
        k = int(raw)
    except ValueError:
        raise RequestError(400, f"top_k must be a whole number or 'all', got {raw!r}") from None
    if k < 1:
        raise RequestError(400, f"top_k must be at least 1, got {k}")
    return min(k, labels)


def _upload_name(upload: UploadFile) -> str:
    name = Path(upload.filename or "upload").name.strip() or "upload"
    return name[:200]


def create_app(service: Service) -> Starlette:
    """The Starlette application over a loaded :class:`Service`."""

    async def page(request: Request) -> Response:
        return _static_response("index.html")

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC or name == "index.html":
            return _error(404, f"no static file {name!r}")
        return _static_response(name)

    async def models(request: Request) -> Response:
        return JSONResponse(service.describe())

    async def stats(request: Request) -> Response:
        return JSONResponse(service.stats())

    async def predict(request: Request) -> Response:
        if service.admitted >= service.limits.max_queue:
            log.warning("busy: refused a request (503), %d admitted (--max-queue %d)",
                        service.admitted, service.limits.max_queue)
            await _drop_body(request, service.limits)
            return JSONResponse({"error": f"the server is busy: {service.admitted} requests are being analysed "
                                          f"or waiting (--max-queue {service.limits.max_queue}); retry in "
                                          f"{RETRY_AFTER_S} s"},
                                status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
        service.admitted += 1
        try:
            return await _predict(request)
        finally:
            service.admitted -= 1

    async def _predict(request: Request) -> Response:
        path = None
        try:
            body = await _read_body(request, service.limits)
            try:
                form = await _parse_form(request, body)
            finally:
                body.close()
            def param(key):
                return form.get(key) if form.get(key) not in (None, "") else request.query_params.get(key)

            model_name = param("model") or service.default
            if model_name not in service.genre:
                raise RequestError(404, f"no model {model_name!r}; loaded: {', '.join(service.genre)}")
            model = service.genre[model_name]
            top_k = _top_k(param("top_k"), len(model.run.info["label_names"]))
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise RequestError(400, "no file in the request: send the audio as the multipart field 'file'")
            name = _upload_name(upload)
            size = upload.size if upload.size is not None else None
            if size == 0:
                raise RequestError(400, f"{name}: empty file (0 bytes)")
            if size is not None and size > service.limits.max_bytes:
                raise RequestError(413, f"{name}: {size / 2**20:.1f} MB is over the "
                                        f"{service.limits.max_bytes / 2**20:g} MB limit (--max-mb)")
            fd, path = tempfile.mkstemp(prefix="jaxmusic-upload-", suffix=Path(name).suffix.lower()[:10])
            with os.fdopen(fd, "wb") as out:
                await upload.seek(0)
                while chunk := await upload.read(CHUNK):
                    out.write(chunk)
            await upload.close()
            spectrogram = str(param("spectrogram") or "").lower() in ("1", "true", "yes")
            emotion = service.emotion.run if service.emotion else None
            future = service.pool.submit(analyse, path, name, model.run, emotion, service.limits,
                                         top_k, spectrogram)
            result = await asyncio.wrap_future(future)
            result["model"] = model.name
            result["emotion_model"] = service.emotion.name if service.emotion else None
            return JSONResponse(result)
        except RequestError as e:
            log.info("refused (%d): %s", e.status, e.message)
            return _error(e.status, e.message)
        except ClientDisconnect as e:   # nobody is left to answer
            log.warning("upload abandoned: %s", e)
            return Response(status_code=499)
        except Exception as e:  # a bug, not bad input: say so, keep serving
            log.exception("prediction failed")
            return _error(500, f"internal error: {type(e).__name__}: {e}")
        finally:
            if path is not None:
                Path(path).unlink(missing_ok=True)

    routes = [Route("/", page), Route("/static/{name}", static), Route("/api/models", models),
              Route("/api/stats", stats), Route("/api/predict", predict, methods=["POST"])]
    app = Starlette(routes=routes)
    app.state.service = service
    return app


def _static_response(name: str) -> Response:
    data = resources.files("jaxmusic.serve").joinpath("static", name).read_bytes()
    return Response(data, media_type=STATIC[name], headers={"Cache-Control": "no-cache"})
