"""Shared fixtures: tiny random-weight models written to tmp files (no downloads)."""
import os
from pathlib import Path

import pytest
import torch

from tint.core.model import Colorizer, ColorizerConfig
from tint.core.weights import save_weights

# TINT_DATA: where the GPU machine finds the carried copy of ../shared/data (dev/ only)
DATA = Path(os.environ.get("TINT_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


GPU_TIMEOUT = 60   # seconds a GPU test may take before it counts as hung


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in gpu_items:
            item.add_marker(skip)
    elif config.pluginmanager.hasplugin("timeout"):
        # A hung GPU test must not eat a whole (scarce) device call.
        for item in gpu_items:
            item.add_marker(pytest.mark.timeout(GPU_TIMEOUT))


@pytest.fixture(autouse=True)
def _gpu_hang_guard(request):
    """Backstop without pytest-timeout, or when a C call blocks: dump every thread's
    stack and end the process."""
    if "gpu" not in request.keywords:
        yield
        return
    import faulthandler
    faulthandler.dump_traceback_later(2 * GPU_TIMEOUT, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: thread hand-offs cost more than the maths on a shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A small random tiny-darknet 'bins' model in tint's format (about 2.7 MB)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_weights(Colorizer(ColorizerConfig(backbone="tiny-darknet", output="bins", final_width=8)).eval(),
                 path, meta={"note": "random test weights"})
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip("../shared/data not present")
    return DATA


# --------------------------------------------------------------------------- bounded-memory runs
REPO = Path(__file__).resolve().parents[1]
MEMORY_LIMIT_MB = 2048     # address space for the bounded-memory cases (torch + tint alone take ~0.7 GB)


def limited_env(**extra) -> dict:
    """Environment for a child process that runs this checkout's tint: few threads (every
    thread reserves address space) and few malloc arenas."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MALLOC_ARENA_MAX="2", TINT_DEBUG="")
    env.update(extra)
    return env


def set_memory_limit(mb: int = MEMORY_LIMIT_MB) -> None:
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))


def run_limited(args, *, mb: int = MEMORY_LIMIT_MB, timeout: float = 120, **kw):
    """subprocess.run(args) under an address-space limit of ``mb`` MiB: an allocation
    over it fails at once instead of swapping the machine."""
    import subprocess
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=limited_env(),
                          preexec_fn=lambda: set_memory_limit(mb), cwd=str(REPO), **kw)


def served_url(proc, timeout: float = 60) -> str:
    """The http://127.0.0.1:PORT a `tint serve` subprocess (stderr piped, text) prints."""
    import re
    import time
    line, deadline = "", time.monotonic() + timeout
    while "open http" not in line and time.monotonic() < deadline:
        line = proc.stderr.readline()
        assert line or proc.poll() is None, "server exited early"
    m = re.search(r"open (http://127\.0\.0\.1:\d+)/", line)
    assert m, line
    return m.group(1)
