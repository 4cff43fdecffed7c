#!/usr/bin/env bash
# make gpu-check: the GPU check (tools/gpu_check.py), set-up included.
#
# On a GPU machine without internet (the device machine: torch with CUDA but no
# Detectron2), the packages come from .whl/, filled beforehand on a machine with the
# package registry by scripts/gpu_wheels.sh. Elsewhere the project's own .venv is used; on
# a machine without CUDA the check says in one line that it needs a GPU.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
output=${OUT:-output/gpu_check}

if [ -d .whl ] && python3 -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/resnext-det-site .whl/*.whl
  export PYTHONPATH="/tmp/resnext-det-site:$here"
  python=python3
  # configs ship inside the package as a link (setup.py), made here without installing
  [ -e resnext_det/model_zoo/configs ] || ln -s "$here/configs" resnext_det/model_zoo/configs
else
  VENV=${VENV:-.venv} bash scripts/setup_env.sh >/dev/null
  python=${VENV:-.venv}/bin/python
fi
exec "$python" tools/gpu_check.py --output "$output" "$@"
