"""``tint serve``: a local web page and HTTP API over the same ``colorize()``.

One process loads the model once and answers:

    GET  /             the page (tint/static/index.html: drop photos, before/after, webcam)
    GET  /api/health   {"status": "ok", "version", "device", "model", "size", "limits", ...}
    POST /api/colorize body = image bytes (raw, or multipart/form-data with one file);
                       query: size (working size), format (png|jpeg), quality (1..95)
                       -> the colorized image

Safe by default: binds to loopback; the upload size is checked while the body is read;
the pixel count is checked from the image header before anything is decoded; the type is
decided by decoding, never by a name; a fixed number of requests run at once and the next
one is told 503 {"error": "busy"} at once rather than queued towards out-of-memory; no
part of a request is ever used as a path; the model runs in a worker thread, off the event
loop.  Every error is JSON {"error": "one line"} with a fitting status, never a traceback.

Starlette and uvicorn (the ``tint[serve]`` extra) are imported only when serving.
"""
from __future__ import annotations

import io
import ipaddress
import socket
import sys
import threading
import time
from dataclasses import dataclass
from importlib import resources

from .errors import TintError
from .pixels import MAX_SIZE, MIN_SIZE

INSTALL_HINT = 'pip install "tint[serve]"'
FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg"), "jpg": ("JPEG", "image/jpeg")}
# What Image.open may try (multi-picture JPEGs open as JPEG): common photo formats only,
# so a request cannot reach rarer decoders.
DECODERS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "PPM")
CSP = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
       "script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


class RequestError(Exception):
    """A request the client can fix: becomes {"error": message} with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------- CLI
def add_arguments(parser) -> None:
    g = parser.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    g.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    g.add_argument("--max-upload-mb", type=float, default=25.0,
                   help="largest request body accepted, in MB (default 25)")
    g.add_argument("--max-pixels", type=int, default=40_000_000,
                   help="largest image accepted, in pixels, checked before decoding (default 40M)")
    g.add_argument("--concurrency", type=int, default=4,
                   help="requests colorized at once; more are answered 503 busy (default 4)")


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 25 * 1_000_000
    max_pixels: int = 40_000_000
    concurrency: int = 4

    def __post_init__(self):
        if self.max_upload_bytes < 1:
            raise TintError(f"--max-upload-mb must be positive, got {self.max_upload_bytes / 1e6:g}")
        if self.max_pixels < 1:
            raise TintError(f"--max-pixels must be positive, got {self.max_pixels}")
        if self.concurrency < 1:
            raise TintError(f"--concurrency must be at least 1, got {self.concurrency}")


def run(args) -> int:
    uvicorn = _import_server()[1]
    limits = Limits(int(args.max_upload_mb * 1_000_000), args.max_pixels, args.concurrency)
    warning = exposure_warning(args.host)
    if warning:
        print(warning, file=sys.stderr)
    sock = bind_socket(args.host, args.port)          # before loading: a taken port fails fast
    try:
        from .api import load
        runner = load(args.weights, args.device, size=args.size)
        app = create_app(runner, limits, bind_host=args.host)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"tint serve: {runner.config.backbone} model on {runner.device}, working size {runner.size}; "
              f"open http://{shown}:{port}/  (Ctrl+C stops)", file=sys.stderr, flush=True)
        uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])
    finally:
        sock.close()
    return 0


def _import_server():
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as e:
        raise TintError(f"tint serve needs {e.name}: {INSTALL_HINT}") from None
    return starlette, uvicorn


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback one (127.0.0.0/8, ::1)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def exposure_warning(host: str) -> str | None:
    if is_loopback(host):
        return None
    return (f"tint serve: warning: binding to {host}, not loopback: anyone who can reach this "
            f"machine can use the server (there is no authentication)")


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port), or a TintError in one line."""
    if not 0 <= port <= 65535:
        raise TintError(f"--port must be in 0..65535, got {port}")
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
    except OSError as e:
        raise TintError(f"cannot resolve --host {host!r} ({e})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise TintError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    sock.setblocking(False)
    return sock


# --------------------------------------------------------------------------- image work (no web types)
def parse_options(query, default_size: int) -> tuple[int, str, int]:
    """Query params -> (working size, format key, jpeg quality), or a 400 RequestError."""
    def integer(name, default, lo, hi):
        raw = query.get(name)
        if raw is None or raw == "":
            return default
        try:
            v = int(raw)
        except ValueError:
            raise RequestError(400, f"{name} must be an integer, got {raw[:40]!r}") from None
        if not lo <= v <= hi:
            raise RequestError(400, f"{name} must be in {lo}..{hi}, got {v}")
        return v

    size = integer("size", default_size, MIN_SIZE, MAX_SIZE)
    fmt = (query.get("format") or "png").lower()
    if fmt not in FORMATS:
        raise RequestError(400, f"format must be png or jpeg, got {fmt[:40]!r}")
    quality = integer("quality", 90, 1, 95)
    return size, fmt, quality


def decode_image(data: bytes, max_pixels: int):
    """Image bytes -> a loaded PIL image.  The header is checked as ``tint.io`` checks files
    (size against ``max_pixels`` before any pixel is decoded); the type comes from the bytes."""
    from .io import NotAnImage, TooManyPixels, open_header
    if not data:
        raise RequestError(400, "empty body: send the image bytes (raw or multipart/form-data)")
    try:
        img = open_header(data, max_pixels, formats=DECODERS, hint="this server's --max-pixels")
    except NotAnImage:
        raise RequestError(415, "not an image this server can decode "
                                "(send PNG, JPEG, WebP, TIFF, BMP, GIF or PPM bytes)") from None
    except TooManyPixels as e:
        raise RequestError(413, str(e)) from None
    except TintError as e:
        raise RequestError(400, str(e)) from None
    try:
        img.load()
    except Exception as e:  # truncated or corrupt data: PIL raises OSError, ValueError, SyntaxError...
        why = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise RequestError(400, f"could not decode the {img.format} image ({why})") from None
    return img


def encode_image(img, fmt: str, quality: int) -> bytes:
    """PIL RGB/RGBA -> PNG or JPEG bytes (JPEG drops alpha; the ICC profile is kept)."""
    pil_format, _ = FORMATS[fmt]
    kw = {}
    if img.info.get("icc_profile"):
        kw["icc_profile"] = img.info["icc_profile"]
    if pil_format == "JPEG":
        if img.mode != "RGB":
            img = img.convert("RGB")
        kw.update(quality=quality, subsampling=0 if quality >= 90 else 2)
    else:
        kw.update(compress_level=3)        # level 6 costs 2-3x the time for ~10% smaller files
    buf = io.BytesIO()
    img.save(buf, pil_format, **kw)
    return buf.getvalue()


def colorize_bytes(runner, data: bytes, size: int, fmt: str, quality: int, max_pixels: int) -> bytes:
    """The whole request in one blocking call (run it in a worker thread)."""
    from .api import colorize
    img = decode_image(data, max_pixels)
    try:
        out = colorize(img, size=size, runner=runner)
    except TintError as e:
        raise RequestError(400, str(e)) from None
    return encode_image(out, fmt, quality)


def first_file_part(body: bytes, content_type: str) -> bytes:
    """The first file of a multipart/form-data body (or its first field when none is a file)."""
    try:
        from python_multipart.multipart import MultipartParser, parse_options_header
    except ImportError:
        raise RequestError(415, f"multipart uploads need python-multipart ({INSTALL_HINT}); "
                                f"or send the image bytes raw") from None
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise RequestError(400, "multipart body without a boundary")
    parts: list[dict] = []
    field = bytearray()

    def begin():
        parts.append({"headers": {}, "data": bytearray()})

    def header_field(b, s, e):
        field.extend(b[s:e])

    def header_value(b, s, e):
        parts[-1]["headers"].setdefault(bytes(field).lower(), bytearray()).extend(b[s:e])

    def header_end():
        field.clear()

    def data(b, s, e):
        parts[-1]["data"].extend(b[s:e])

    parser = MultipartParser(boundary, {"on_part_begin": begin, "on_header_field": header_field,
                                        "on_header_value": header_value, "on_header_end": header_end,
                                        "on_part_data": data})
    try:
        parser.write(body)
        parser.finalize()
    except Exception as e:
        raise RequestError(400, f"malformed multipart body ({type(e).__name__})") from None
    if not parts:
        raise RequestError(400, "multipart body has no parts; put the image in a file field")
    for part in parts:
        _, disp = parse_options_header(bytes(part["headers"].get(b"content-disposition", b"")))
        if b"filename" in disp:
            return bytes(part["data"])
    return bytes(parts[0]["data"])


# --------------------------------------------------------------------------- the app
class Slots:
    """At most ``n`` requests at once; the rest are refused, not queued.  Used only
    from the event loop thread, so a plain counter is enough."""

    def __init__(self, n: int):
        self.n, self.used = n, 0

    def try_acquire(self) -> bool:
        if self.used >= self.n:
            return False
        self.used += 1
        return True

    def release(self) -> None:
        self.used -= 1


def page_html() -> bytes:
    return resources.files("tint").joinpath("static/index.html").read_bytes()


def create_app(runner, limits: Limits = Limits(), *, bind_host: str = "127.0.0.1"):
    """The Starlette app serving ``runner``.  Pure: no sockets, usable with any ASGI server."""
    _import_server()
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from . import __version__

    slots = Slots(limits.concurrency)
    page = page_html()
    check_host = is_loopback(bind_host)
    allowed_hosts = LOOPBACK_NAMES | {bind_host.strip("[]").lower()}

    def error(status: int, message: str, headers=None):
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    async def read_body(request: Request) -> bytes:
        """The body, refused with 413 as soon as it passes the limit (declared or streamed)."""
        limit = limits.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                raise RequestError(400, "bad Content-Length header") from None
            if n > limit:
                raise RequestError(413, f"upload is {n:,} bytes; this server accepts at most "
                                        f"{limit:,} (--max-upload-mb)")
        buf = bytearray()
        async for chunk in request.stream():
            buf.extend(chunk)
            if len(buf) > limit:
                raise RequestError(413, f"upload is over {limit:,} bytes (--max-upload-mb)")
        return bytes(buf)

    async def index(request: Request):
        return Response(page, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})

    async def health(request: Request):
        return JSONResponse({
            "status": "ok",
            "version": __version__,
            "device": str(runner.device),
            "precision": runner.precision,
            "model": runner.config.to_dict(),
            "weights": runner.weights_path.name,
            "size": runner.size,
            "sizes": {"min": MIN_SIZE, "max": MAX_SIZE, "multiple": runner.model.multiple},
            "formats": ["png", "jpeg"],
            "limits": {"max_upload_bytes": limits.max_upload_bytes, "max_pixels": limits.max_pixels,
                       "concurrency": limits.concurrency},
            "busy": slots.used,
        }, headers={"Cache-Control": "no-store"})

    async def colorize_route(request: Request):
        size, fmt, quality = parse_options(request.query_params, runner.size)
        if not slots.try_acquire():     # before the body: memory stays under concurrency x limit
            return error(503, "busy", {"Retry-After": "1"})
        try:
            body = await read_body(request)
            ctype = request.headers.get("content-type", "")
            if ctype.lower().startswith("multipart/form-data"):
                body = first_file_part(body, ctype)
            t0 = time.perf_counter()
            out = await run_in_threadpool(colorize_bytes, runner, body, size, fmt, quality, limits.max_pixels)
            ms = (time.perf_counter() - t0) * 1000
        finally:
            slots.release()
        return Response(out, media_type=FORMATS[fmt][1], headers={
            "Cache-Control": "no-store", "X-Tint-Size": str(size), "X-Tint-Ms": f"{ms:.1f}",
            "Content-Disposition": f'inline; filename="colorized.{"jpg" if fmt != "png" else "png"}"'})

    async def on_request_error(request, exc: RequestError):
        return error(exc.status, exc.message)

    async def on_http_error(request, exc: HTTPException):
        return error(exc.status_code, {404: "not found", 405: "method not allowed"}.get(
            exc.status_code, str(exc.detail).lower()))

    async def on_disconnect(request, exc):
        return error(400, "client disconnected")

    async def on_crash(request, exc: Exception):
        # uvicorn logs the traceback on the server side; the client gets one line.
        return error(500, "internal error (see the server log)")

    app = Starlette(routes=[
        Route("/", index, methods=["GET", "HEAD"]),
        Route("/api/health", health, methods=["GET", "HEAD"]),
        Route("/api/colorize", colorize_route, methods=["POST"]),
    ], exception_handlers={RequestError: on_request_error, HTTPException: on_http_error,
                           ClientDisconnect: on_disconnect, Exception: on_crash})

    async def guarded(scope, receive, send):
        """Host check (DNS rebinding) and headers every response carries."""
        if scope["type"] != "http":
            return await app(scope, receive, send)
        if check_host:
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
            name = host[1:host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
            if name not in allowed_hosts:
                resp = error(400, f"host {host[:60]!r} not allowed: this server answers loopback names only")
                return await resp(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + [
                    (b"x-content-type-options", b"nosniff"),
                    (b"content-security-policy", CSP.encode()),
                    (b"referrer-policy", b"no-referrer")]
            await send(message)
        await app(scope, receive, send_with_headers)

    guarded.app = app
    guarded.slots = slots
    return guarded


# --------------------------------------------------------------------------- in-process server (tests, loadtest)
class BackgroundServer:
    """uvicorn serving ``app`` on a loopback port from a daemon thread.

    >>> with BackgroundServer(app) as url: httpx.get(url + "/api/health")
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        if not is_loopback(host):
            raise TintError(f"BackgroundServer binds loopback only, got {host!r}")
        uvicorn = _import_server()[1]
        self.sock = bind_socket(host, port)
        h, p = self.sock.getsockname()[:2]
        self.url = f"http://{'[' + h + ']' if ':' in h else h}:{p}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="error", access_log=False))
        self.server.install_signal_handlers = lambda: None      # not the main thread
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self.url

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
