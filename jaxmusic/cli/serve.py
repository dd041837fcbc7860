"""`jaxmusic serve`: the web page and JSON API over trained runs (needs the serve extra)."""

from __future__ import annotations

import logging
import socket
import sys

try:  # the optional extra: without it, `jaxmusic serve` says how to get it
    import uvicorn

    from jaxmusic.serve.analysis import Limits
    from jaxmusic.serve.app import Service, create_app
except ImportError as e:  # pragma: no cover - depends on the installation
    MISSING = e
else:
    MISSING = None


def add_arguments(parser, command: str) -> None:
    parser.add_argument("--workdir", action="append", required=True,
                        help="a genre run directory (repeat to offer several models; the first is the default)")
    parser.add_argument("--emotion-workdir", help="an emotion (regression/multitask) run directory")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free port; default 8000)")
    parser.add_argument("--max-mb", type=float, default=50.0, help="largest upload in MB (default 50)")
    parser.add_argument("--max-minutes", type=float, default=20.0,
                        help="longest audio accepted, in minutes (default 20)")
    parser.add_argument("--max-queue", type=int, default=64,
                        help="most predictions admitted at once, being uploaded, waiting or analysed; more are "
                             "answered 503 with Retry-After (default 64)")
    parser.add_argument("--max-batch", type=int, default=16,
                        help="most 30 s windows in one model call (default 16)")
    parser.add_argument("--batch-wait-ms", type=float, default=10.0,
                        help="how long a model call waits for more requests to join it (default 10 ms)")
    parser.add_argument("--workers", type=int, default=0,
                        help="threads decoding audio and computing features (default: cores, at most 4)")
    parser.add_argument("--quiet", action="store_true", help="no access log")


def run(args, command: str) -> int:
    if MISSING is not None:
        print(f"jaxmusic serve: needs the serve extra ({MISSING}); install it with "
              "pip install -e '.[serve]'", file=sys.stderr)
        return 2
    if args.max_mb <= 0 or args.max_minutes <= 0 or args.max_batch < 1 or args.max_queue < 1:
        print("jaxmusic serve: --max-mb, --max-minutes, --max-batch and --max-queue must be positive",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    limits = Limits(max_bytes=int(args.max_mb * 2**20), max_seconds=args.max_minutes * 60,
                    max_queue=args.max_queue)
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    except OSError as e:
        print(f"jaxmusic serve: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"loading {len(args.workdir)} genre run(s)" + (" and an emotion run" if args.emotion_workdir else "")
          + " and compiling them ...", flush=True)
    try:
        service = Service.load(args.workdir, args.emotion_workdir, limits=limits, workers=args.workers,
                               max_batch=args.max_batch, max_wait_s=args.batch_wait_ms / 1000)
    except ValueError as e:
        print(f"jaxmusic serve: error: {e}", file=sys.stderr)
        return 2
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"jaxmusic serve: listening on {args.host}: anyone who can reach this machine can use it",
              file=sys.stderr)
    print(f"jaxmusic serve: http://{shown}:{port}/ (models: {', '.join(service.genre)}"
          + (f"; emotion: {service.emotion.name}" if service.emotion else "") + ")", flush=True)
    config = uvicorn.Config(create_app(service), log_level="warning" if args.quiet else "info",
                            access_log=not args.quiet, timeout_graceful_shutdown=5)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        service.close()
    return 0
