#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment.
#
# Idempotent: when the environment already matches requirements and the stamp file
# is newer than every input, it returns in a second. Detectron2 is not on the package
# registry under its own name; on machines without internet we repack the registry
# wheel `sal-detectron2==0.7.2` (official Detectron2 Python code at a59f0563) as a
# pure-Python wheel, checked by sha256. With internet, a Detectron2 from its own
# repository works just as well: the code only needs `import detectron2`.
#
# Sourcing this file (as the tests do) defines its functions without running it.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

D2_WHEEL_NAME=sal-detectron2
D2_WHEEL_VERSION=0.7.2
D2_WHEEL_SHA256=491af0c7f79bdb2d178e46f6cb16a97c4ac968d45c41ea3f6b6435d59bbee561

die() { echo "setup: $*" >&2; exit 1; }

# verify_sha256 FILE EXPECTED: refuse a file whose sha256 is not EXPECTED.
verify_sha256() {
  local got
  got=$(sha256sum "$1" | cut -d' ' -f1)
  [ "$got" = "$2" ] || die "sha256 of $(basename "$1") is $got, expected $2; refusing to install it"
}

# pip VENV ARGS...: the venv's pip, without the noise of this machine's pip config.
venv_pip() {
  local venv=$1
  shift
  "$venv/bin/python" -m pip --disable-pip-version-check "$@" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

# detectron2_wheel VENV BUILD_DIR: download the registry wheel, check it, repack it as
# pure Python (its bundled _C is built for CPython 3.10 only and cannot load); prints
# the repacked wheel's path.
detectron2_wheel() {
  local venv=$1 build=$2 whl pkg dist
  venv_pip "$venv" download -q --no-deps --only-binary=:all: --python-version 3.10 \
    -d "$build/dl" "$D2_WHEEL_NAME==$D2_WHEEL_VERSION" >&2 2>/dev/null \
    || die "could not download $D2_WHEEL_NAME==$D2_WHEEL_VERSION from the package registry"
  whl=$(ls "$build"/dl/*.whl)
  verify_sha256 "$whl" "$D2_WHEEL_SHA256"
  "$venv/bin/python" -m wheel unpack -d "$build/src" "$whl" >/dev/null
  pkg=$(ls -d "$build"/src/*/)
  rm -f "$pkg"detectron2/_C.*.so
  dist=$(ls -d "$pkg"*.dist-info)
  sed -i '/detectron2\/_C\..*\.so/d' "$dist/RECORD"
  printf 'Wheel-Version: 1.0\nGenerator: setuptools (75.6.0)\nRoot-Is-Purelib: true\nTag: py3-none-any\n' \
    > "$dist/WHEEL"
  mkdir -p "$build/out"
  "$venv/bin/python" -m wheel pack -d "$build/out" "$pkg" >/dev/null
  ls "$build"/out/*.whl
}

# install_pinned VENV REQUIREMENTS [EXTRA...]: install the pins, or say which cannot be met.
install_pinned() {
  local venv=$1 requirements=$2
  shift 2
  venv_pip "$venv" install -q "$@" -r "$requirements" \
    || die "could not install the pinned requirements of $requirements (pip's reason is above)"
}

main() {
  local venv=${VENV:-$here/.venv}
  local python=${PYTHON:-python3}
  local stamp=$venv/.resnext-det-setup-done
  local inputs=("$here/requirements.txt" "$here/setup.py" "$here/scripts/setup_env.sh")
  local f up_to_date=1
  [ -f "$stamp" ] || up_to_date=0
  for f in "${inputs[@]}"; do [ "$f" -nt "$stamp" ] && up_to_date=0; done
  if [ "$up_to_date" = 1 ]; then
    echo "setup: $venv is up to date"
    return 0
  fi

  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' \
    || die "Python >= 3.9 is required, found $("$python" --version 2>&1)"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv" || die "could not create a venv at $venv"
  venv_pip "$venv" install -q wheel || die "could not install 'wheel'"

  # Detectron2: keep an importable one (e.g. installed by the user from its repository);
  # otherwise build the pure-Python wheel once and install it with the pinned requirements.
  local d2_wheel=()
  if ! "$venv/bin/python" -c 'import detectron2' 2>/dev/null; then
    local build whl
    build=$(mktemp -d)
    trap "rm -rf '$build'" EXIT
    whl=$(detectron2_wheel "$venv" "$build") || exit 1
    d2_wheel=("$whl")
  fi
  install_pinned "$venv" "$here/requirements.txt" "${d2_wheel[@]}"
  # deepforest ships the demo photos; its own dependencies (a deep-learning stack) are not needed.
  venv_pip "$venv" install -q --no-deps "deepforest==2.1.0" \
    || die "could not install deepforest==2.1.0 (demo photos)"
  venv_pip "$venv" install -q --no-deps -e "$here" \
    || die "could not install resnext-det in editable mode"

  "$venv/bin/python" - <<'PY' || die "the installed environment does not import (see above)"
import importlib.util
import torch, torchvision, detectron2, pycocotools, fvcore, cv2  # noqa: F401
from torchvision.ops import nms  # the compiled ops must load
import resnext_det  # noqa: F401
nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
assert importlib.util.find_spec("deepforest") is not None
print(f"setup: torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"detectron2 {detectron2.__version__}")
PY
  touch "$stamp"
  echo "setup: ready in $venv"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
