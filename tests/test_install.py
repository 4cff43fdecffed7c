"""The setup script: the Detectron2 wheel is checked by its hash, unmeetable pins are named."""

import hashlib
import subprocess
import sys
from pathlib import Path

from ._paths import REPO

SETUP = REPO / "scripts" / "setup_env.sh"


def _bash(script: str, **env):
    return subprocess.run(
        ["bash", "-c", f"source {SETUP}; {script}"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env},
    )


def test_every_requirement_is_pinned():
    lines = [
        line.strip()
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines and all("==" in line for line in lines), lines
    assert "torch==2.14.1" in lines and "torchvision==0.29.1" in lines


def test_a_wheel_of_another_hash_is_refused(tmp_path):
    wheel = tmp_path / "sal_detectron2-0.7.2-cp310-cp310-linux_x86_64.whl"
    wheel.write_bytes(b"not the wheel we checked")
    run = _bash(f"verify_sha256 {wheel} $D2_WHEEL_SHA256; echo installed")
    assert run.returncode == 1 and "installed" not in run.stdout
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert run.stderr.strip() == (
        f"setup: sha256 of {wheel.name} is {digest}, expected "
        "491af0c7f79bdb2d178e46f6cb16a97c4ac968d45c41ea3f6b6435d59bbee561; refusing to install it"
    )
    ok = _bash(f"verify_sha256 {wheel} {digest}; echo accepted")
    assert ok.returncode == 0 and ok.stdout.strip() == "accepted"


def test_a_pin_that_cannot_be_met_fails_with_a_clear_message(tmp_path):
    """Offline (no index), so nothing is downloaded and nothing installed."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("torch==0.0.1\n")
    venv = Path(sys.executable).parents[1]
    run = _bash(
        f"install_pinned {venv} {requirements}; echo installed",
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(tmp_path),
    )
    assert run.returncode == 1 and "installed" not in run.stdout
    assert "torch==0.0.1" in run.stderr  # pip names the pin it could not satisfy
    assert run.stderr.strip().splitlines()[-1] == (
        f"setup: could not install the pinned requirements of {requirements} "
        "(pip's reason is above)"
    )


def test_sourcing_the_script_installs_nothing():
    run = _bash("type main install_pinned verify_sha256 >/dev/null && echo defined")
    assert run.returncode == 0 and run.stdout.strip() == "defined"
