"""``tint serve``: the options of the local web server, and its start."""
from __future__ import annotations

import sys

from ..serve.server import Limits, import_server, bind_socket, create_app, exposure_warning
from .options import add_colour_options, add_model_options, load_runner


def add_arguments(parser) -> None:
    add_model_options(parser)
    add_colour_options(parser)
    g = parser.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    g.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    g.add_argument("--max-upload-mb", type=float, default=25.0,
                   help="largest request body accepted, in MB (default 25)")
    g.add_argument("--max-pixels", type=int, default=40_000_000,
                   help="largest image accepted, in pixels, checked before decoding (default 40M)")
    g.add_argument("--concurrency", type=int, default=4,
                   help="requests colorized at once (default 4)")
    g.add_argument("--queue", type=int, default=16,
                   help="requests that may wait for a free slot; beyond them: 503 busy (default 16)")
    g.add_argument("--queue-timeout", type=float, default=30.0, metavar="S",
                   help="longest a request waits in the queue before 503 busy (default 30 s)")
    g.add_argument("--body-timeout", type=float, default=30.0, metavar="S",
                   help="a request's whole body must arrive within S seconds, else 408 (default 30)")
    g.add_argument("--idle-timeout", type=float, default=10.0, metavar="S",
                   help="a body that sends nothing for S seconds is dropped with 408 (default 10)")


def run(args) -> int:
    uvicorn = import_server()[1]
    limits = Limits(int(args.max_upload_mb * 1_000_000), args.max_pixels, args.concurrency, args.queue,
                    args.queue_timeout, args.body_timeout, args.idle_timeout)
    warning = exposure_warning(args.host)
    if warning:
        print(warning, file=sys.stderr)
    sock = bind_socket(args.host, args.port)          # before loading: a taken port fails fast
    try:
        runner = load_runner(args)
        app = create_app(runner, limits, bind_host=args.host)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"tint serve: {runner.config.backbone} model on {runner.device}, working size {runner.size}, "
              f"{limits.concurrency} at once + {limits.queue} queued; "
              f"open http://{shown}:{port}/  (Ctrl+C stops)", file=sys.stderr, flush=True)
        uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])
    finally:
        sock.close()
    return 0
