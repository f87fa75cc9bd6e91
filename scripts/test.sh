#!/usr/bin/env bash
# The test command from the README: install tint (CPU torch first, so pip does not pull CUDA) and run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q "torch==2.13.0"
python3 -m pip install -q -e ".[test]"
python3 -m pytest -q "$@"
