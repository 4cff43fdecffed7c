#!/usr/bin/env bash
# Fill .whl/ with what the device machine's Python 3.12 (torch with CUDA, numpy 2, no
# Detectron2) lacks for `make gpu-check`: run it here, then carry .whl to the device.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
source scripts/setup_env.sh  # functions only
mkdir -p .whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
download() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d .whl "$@"
}
# Compiled for CPython 3.12:
download pycocotools==2.0.11 faster-coco-eval==1.8.0
# Pure Python, some published as source only: built into wheels here.
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
python3 -m venv "$build/venv" && "$build/venv/bin/pip" install -q wheel
"$build/venv/bin/pip" wheel -q --no-deps -w .whl fvcore==0.1.5.post20221221 iopath==0.1.10 \
  yacs==0.1.8 termcolor==3.1.0 omegaconf==2.3.0 hydra-core==1.3.2 \
  antlr4-python3-runtime==4.9.3 deepforest==2.1.0
# Detectron2: the registry wheel, checked by sha256 and repacked as pure Python.
cp "$(detectron2_wheel "$build/venv" "$build")" .whl/
du -sh .whl
