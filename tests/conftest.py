"""Shared fixtures: tiny random-weight models written to tmp files (no downloads)."""
from pathlib import Path

import pytest
import torch

from tint.model import Colorizer, ColorizerConfig
from tint.weights import save_weights

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


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
