#!/usr/bin/env bash
# Creates .venv with everything the recipe and the tests need (idempotent, CPU-only torch).
# Usage: tools/install.sh            (re-run is a no-op once installed)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=.venv/.ser-installed
if [ ! -f $stamp ] || [ pyproject.toml -nt $stamp ]; then
  .venv/bin/pip install -q --upgrade pip
  # pin torch first: an unpinned torch pulls GBs of CUDA wheels; 2.13.0 has a CPU build on disk here
  .venv/bin/pip install -q "torch==${TORCH_VERSION:-2.13.0}"
  .venv/bin/pip install -q -e ".[test]"
  touch $stamp
fi
echo "tools/install.sh: $(.venv/bin/python -c 'import torch, ser; print("ser", ser.__version__, "torch", torch.__version__)')"
