#!/usr/bin/env python
"""Load test for ``tint serve``: N requests, K at a time, against a loopback server only.

    python scripts/loadtest.py                        # starts its own server (random tiny model, CPU)
    python scripts/loadtest.py --weights my.safetensors --size 256 --device cuda
    python scripts/loadtest.py --url http://127.0.0.1:8000   # a server already running here

Reports failures (by status or error) and latency p50/p90/p99 in milliseconds.  The run is
bounded in count (--requests) and in time (--time-limit); the target must be a loopback
address (127.0.0.0/8, ::1, localhost): this tool never sends traffic off the machine.
Exit status: 0 when every request succeeded, 1 otherwise, 2 on a usage error.
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tint" / "samples" / "sample.jpg"
sys.path.insert(0, str(ROOT))     # the weights are made by this checkout's tint, like the server it starts


def loopback_url(url: str) -> str:
    """``url`` if it is http(s) on a loopback address, else ValueError.  Names other than
    'localhost' are not resolved: only literal loopback addresses are accepted."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    ok = host == "localhost"
    try:
        ok = ok or ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if parts.scheme not in ("http", "https") or not ok:
        raise ValueError(f"only loopback URLs may be targeted (http://127.0.0.1:PORT), got {url!r}")
    return f"{parts.scheme}://{parts.netloc}"


def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty list."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))]


def random_tiny_weights(folder: Path) -> Path:
    """The same random tiny-darknet model the tests use (no trained weights are needed)."""
    import torch

    from tint.core.model import Colorizer, ColorizerConfig
    from tint.core.weights import save_weights
    torch.manual_seed(0)
    return save_weights(Colorizer(ColorizerConfig(backbone="tiny-darknet", output="bins", final_width=8)).eval(),
                        folder / "tiny-random.safetensors", meta={"note": "random load-test weights"})


def start_server(args, weights: Path) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "tint", "serve", "--host", "127.0.0.1", "--port", "0", "--weights", str(weights),
           "--device", args.device, "--concurrency", str(args.server_concurrency), "--queue", str(args.server_queue)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            raise SystemExit(f"loadtest: error: server exited with {proc.returncode}")
        m = re.search(r"open (http://127\.0\.0\.1:\d+)/", line)
        if m:
            # keep draining stderr so a chatty server never blocks on a full pipe
            import threading
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, m.group(1)
    proc.kill()
    raise SystemExit("loadtest: error: server did not start within 120 s")


BODY_HEADERS = {"Content-Type": "application/octet-stream"}    # raw image bytes (a browser would preflight it)


async def load(url: str, body: bytes, args) -> dict:
    import httpx
    params = {"format": args.format}
    if args.size:
        params["size"] = args.size
    lat, fails = [], {}
    sem = asyncio.Semaphore(args.parallel)
    limits = httpx.Limits(max_connections=args.parallel, max_keepalive_connections=args.parallel)
    async with httpx.AsyncClient(base_url=url, timeout=args.request_timeout, limits=limits,
                                 trust_env=False, follow_redirects=False) as client:
        try:
            health = (await client.get("/api/health")).json()
        except (httpx.HTTPError, ValueError) as e:
            raise SystemExit(f"loadtest: error: no tint server answers at {url} ({e or type(e).__name__})") from None
        for _ in range(args.warmup):
            await client.post("/api/colorize", params=params, content=body, headers=BODY_HEADERS)

        async def one():
            async with sem:
                t0 = time.perf_counter()
                try:
                    r = await client.post("/api/colorize", params=params, content=body, headers=BODY_HEADERS)
                    key = None if r.status_code == 200 else f"HTTP {r.status_code}"
                except httpx.HTTPError as e:
                    key = type(e).__name__
                ms = (time.perf_counter() - t0) * 1000
                if key is None:
                    lat.append(ms)
                else:
                    fails[key] = fails.get(key, 0) + 1

        t0 = time.perf_counter()
        tasks = [asyncio.ensure_future(one()) for _ in range(args.requests)]
        done, pending = await asyncio.wait(tasks, timeout=args.time_limit)
        for t in pending:
            t.cancel()
        if pending:
            fails["not finished (time limit)"] = len(pending)
        wall = time.perf_counter() - t0
    report = {"url": url, "requests": args.requests, "parallel": args.parallel, "ok": len(lat),
              "failures": fails, "wall_s": round(wall, 2), "throughput_rps": round(len(lat) / wall, 2),
              "size": args.size or health["size"], "format": args.format, "image_bytes": len(body),
              "device": health["device"], "backbone": health["model"]["backbone"],
              "server_concurrency": health["limits"]["concurrency"],
              "server_queue": (health.get("queue") or {}).get("max_waiting")}
    if lat:
        report.update({f"p{q}_ms": round(percentile(lat, q), 1) for q in (50, 90, 99)})
        report["mean_ms"] = round(sum(lat) / len(lat), 1)
        report["max_ms"] = round(max(lat), 1)
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="a running server on a loopback address (default: start one)")
    p.add_argument("--weights", help="weights for the started server (default: a random tiny-darknet model)")
    p.add_argument("--device", default="cpu", help="device of the started server (default cpu)")
    p.add_argument("--server-concurrency", type=int, default=8, help="--concurrency of the started server")
    p.add_argument("--server-queue", type=int, default=16, help="--queue of the started server (default 16)")
    p.add_argument("--image", type=Path, default=SAMPLE, help="photo to send (default: the bundled sample)")
    p.add_argument("--size", type=int, default=128, help="working size asked for (default 128)")
    p.add_argument("--format", default="jpeg", choices=["png", "jpeg"])
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--parallel", type=int, default=8, help="requests in flight at once (default 8)")
    p.add_argument("--warmup", type=int, default=3, help="untimed requests first (default 3)")
    p.add_argument("--request-timeout", type=float, default=60.0)
    p.add_argument("--time-limit", type=float, default=300.0, help="stop after this many seconds (default 300)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON line")
    args = p.parse_args(argv)
    if not (1 <= args.requests <= 100_000 and 1 <= args.parallel <= 256):
        p.error("--requests must be 1..100000 and --parallel 1..256")
    body = args.image.read_bytes()
    proc = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.url:
            try:
                url = loopback_url(args.url)
            except ValueError as e:
                p.error(str(e))
        else:
            weights = Path(args.weights) if args.weights else random_tiny_weights(Path(tmp))
            proc, url = start_server(args, weights)
            loopback_url(url)
        try:
            report = asyncio.run(load(url, body, args))
        finally:
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['ok']}/{report['requests']} ok, {args.parallel} at a time, in {report['wall_s']} s "
              f"({report['throughput_rps']} req/s) on {report['device']}, {report['backbone']}, "
              f"size {report['size']}, {report['format']}, {report['image_bytes']:,} B per upload")
        if "p50_ms" in report:
            print(f"latency ms: p50 {report['p50_ms']}  p90 {report['p90_ms']}  p99 {report['p99_ms']}  "
                  f"mean {report['mean_ms']}  max {report['max_ms']}")
        print("failures: " + (", ".join(f"{k}: {v}" for k, v in report["failures"].items()) or "none"))
    return 0 if not report["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
