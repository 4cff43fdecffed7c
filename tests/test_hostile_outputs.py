"""Hostile places to write: nothing already written is lost, and each refusal is one line.

The converter never replaces its source or a file it did not write; output folders that
are files or cannot be written are refused before any work; a write that fails (a full
disk) leaves no temporary file and keeps the previous one; one run per output folder; and
a SIGTERM to the launcher of a multi-process run ends its workers and keeps the last
checkpoint whole.
"""

import errno
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model

from resnext_det.checkpoint import (
    SafeDetectionCheckpointer,
    check_outputs,
    convert,
    read_weight_file,
    write_detectron2_weights,
)
from resnext_det.modeling import ResNeXtSpec, build_resnext
from resnext_det.reproduction.analysis.plots import metrics_figures
from resnext_det.reproduction.deploy import export_model
from resnext_det.reproduction.engine import build_config
from resnext_det.reproduction.engine.demo_training import train_demo
from resnext_det.reproduction.engine.predictor import predict_images
from resnext_det.utils.atomic_io import write_atomically
from resnext_det.utils.errors import OutputError
from resnext_det.utils.run_guard import exclusive_output_dir

from ._paths import DEMO_CONFIG, REPO, TINY_DEMO_OPTS
from ._photos import PHOTOS, photo_crops
from ._tools import assert_one_line_error, run_cli

PORTRAIT = PHOTOS["portrait"]


def _run(tool, *args, env=None):
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / tool), *map(str, args)],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
    )


def _assert_one_line_error(run, pattern):
    output = run.stdout + run.stderr
    assert run.returncode == 2, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and re.search(pattern, last), last


# -- the converter's outputs ----------------------------------------------------------------


@pytest.fixture()
def source(tmp_path):
    """A real ResNeXt (depth 14) state dict in Detectron2 names, as a .pth to convert."""
    path = tmp_path / "X14.pth"
    model = build_resnext(ResNeXtSpec(depth=14, norm="FrozenBN"), out_features=["res5"])
    torch.save(model.state_dict(), path)
    return path


def _conversion(path):
    data, _ = read_weight_file(str(path))
    return convert(data)


def _config(path):
    path.write_text("_BASE_: Base-RCNN-FPN-ResNeXt.yaml\nMODEL:\n  WEIGHTS: mine.pth\n")
    return path.read_bytes()


def test_the_converter_never_writes_its_source(source):
    before = source.read_bytes()
    with pytest.raises(OutputError, match=r"output='.*X14\.pth': output .* is the source file"):
        check_outputs(str(source), str(source))
    yaml_source = source.with_suffix(".yaml")
    yaml_source.write_bytes(before)  # weights named .yaml: the snippet of X14.pth is the source
    with pytest.raises(OutputError, match=r"its config snippet .*X14\.yaml is the source file"):
        check_outputs(str(source), str(yaml_source), overwrite=True)
    assert source.read_bytes() == before == yaml_source.read_bytes()


def test_an_output_named_yaml_is_refused(source):
    with pytest.raises(OutputError, match=r"would be overwritten by its own config snippet"):
        write_detectron2_weights(_conversion(source), str(source.parent / "X14_d2.yaml"))
    assert not (source.parent / "X14_d2.yaml").exists()


def test_an_existing_config_beside_the_output_is_kept(source):
    config = source.parent / "X14_d2.yaml"
    before = _config(config)
    with pytest.raises(OutputError, match=r"X14_d2\.yaml exists and is not the config snippet"):
        write_detectron2_weights(_conversion(source), str(source.parent / "X14_d2.pth"))
    assert config.read_bytes() == before
    assert not (source.parent / "X14_d2.pth").exists()


def test_existing_weights_not_written_by_the_converter_are_kept(source, tmp_path):
    trained = tmp_path / "model_final.pth"
    torch.save({"model": {"x": torch.ones(2)}, "iteration": 9}, trained)
    before = trained.read_bytes()
    with pytest.raises(OutputError, match=r"model_final\.pth' exists and was not written by"):
        write_detectron2_weights(_conversion(source), str(trained))
    assert trained.read_bytes() == before


def test_a_conversion_replaces_its_own_files_and_overwrite_replaces_others(source):
    conversion = _conversion(source)
    out = source.parent / "X14_d2.pth"
    write_detectron2_weights(conversion, str(out))
    write_detectron2_weights(conversion, str(out))  # rerun: both files are its own
    other = source.parent / "other.yaml"
    _config(other)
    weights, snippet = write_detectron2_weights(
        conversion, str(source.parent / "other.pth"), overwrite=True
    )
    assert snippet.read_text().startswith("# Input conventions of other.pth")


def test_convert_a_onto_a_ends_in_one_line_and_keeps_a(source):
    before = source.read_bytes()
    run = _run("convert_weights.py", source, source)
    _assert_one_line_error(run, r"is the source file; expected another output name")
    assert source.read_bytes() == before
    assert not source.with_suffix(".yaml").exists()


# -- output folders ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def detector():
    cfg = build_config(str(DEMO_CONFIG), TINY_DEMO_OPTS)
    return cfg, build_model(cfg).eval()


def _writes_fail(folder: Path) -> bool:
    try:
        (folder / "probe").write_text("x")
    except OSError:
        return True
    (folder / "probe").unlink()
    return False


@pytest.fixture()
def places(tmp_path):
    """A file, a path under a file, and a folder this user cannot write."""
    file = tmp_path / "notes.txt"
    file.write_text("mine\n")
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    if not _writes_fail(read_only):  # root writes anyway; /sys refuses root too
        read_only = Path("/sys/kernel")
        if not read_only.is_dir() or not _writes_fail(read_only):
            pytest.skip("no folder this user cannot write")
    yield {
        "a file": (file, r"is a file; expected a folder"),
        "under a file": (file / "out", r"lies under a file \(.*notes\.txt\)"),
        "read-only": (read_only / "out", r"cannot be written \(.*\); expected a folder this"),
    }
    (tmp_path / "read_only").chmod(0o755)


@pytest.fixture(scope="module")
def metrics_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "metrics.json"
    lines = [{"iteration": i, "total_loss": 2.0 / (i + 1), "lr": 0.02} for i in range(3)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _output_users(detector, metrics_file):
    """tool -> (how it names its folder, a call that writes there)."""
    cfg, model = detector
    image = torch.zeros(3, 64, 64)
    return {
        "plot_metrics": ("the plots folder", lambda p: metrics_figures(metrics_file, p)),
        "train_net, appendix_b, pretraining": (
            "OUTPUT_DIR",
            lambda p: exclusive_output_dir(p).__enter__(),
        ),
        "demo": ("--output", lambda p: predict_images(cfg, [DEMO_CONFIG], p, 0.5)),
        "export": ("--output", lambda p: export_model(model, image, str(p))),
        "convert": ("the output's folder", lambda p: check_outputs(str(p / "X.pth"))),
    }


@pytest.mark.parametrize("place", ["a file", "under a file", "read-only"])
@pytest.mark.parametrize(
    "tool", ["train_net, appendix_b, pretraining", "demo", "export", "convert", "plot_metrics"]
)
def test_an_unusable_output_folder_is_one_line(detector, metrics_file, places, place, tool):
    path, pattern = places[place]
    before = path.read_bytes() if path.is_file() else None
    what, write = _output_users(detector, metrics_file)[tool]
    with pytest.raises(OutputError) as refused:
        write(path)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{what}=")
    assert re.search(pattern, message), message
    if before is not None:
        assert path.read_bytes() == before


@pytest.fixture(scope="module")
def detector_weights(detector, tmp_path_factory):
    """The tiny detector's real checkpoint."""
    folder = tmp_path_factory.mktemp("weights")
    SafeDetectionCheckpointer(detector[1], save_dir=str(folder)).save("model_final")
    return folder / "model_final.pth"


def _demo(inputs, output, weights, *flags):
    return run_cli(
        "tools/demo.py", "--config-file", DEMO_CONFIG, "--input", *inputs, "--output", output,
        *flags, *TINY_DEMO_OPTS, "MODEL.WEIGHTS", weights,
    )  # fmt: skip


def test_the_demo_draws_images_of_one_name_into_files_of_their_own(detector_weights, tmp_path):
    """``x.png`` and ``x.PNG``, or ``x.png`` of two folders, would be drawn into one file."""
    crops = photo_crops("florida", 3, 96, seed=5)
    inputs = [tmp_path / "a" / "x.png", tmp_path / "a" / "x.PNG", tmp_path / "b" / "x.png"]
    for crop, path in zip(crops, inputs):
        path.parent.mkdir(exist_ok=True)
        crop.save(path, format="PNG")
    run = _demo([tmp_path / "a", tmp_path / "b" / "x.png"], tmp_path / "out", detector_weights)
    assert run.returncode == 0, run.stderr[-3000:]
    listed = json.loads((tmp_path / "out" / "detections.json").read_text())
    drawn = {Path(d["file_name"]): tmp_path / "out" / d["drawn"] for d in listed}
    assert sorted(drawn) == sorted(inputs)
    assert len({p.name.casefold() for p in drawn.values()}) == 3  # on any file system
    pixels = {path.read_bytes() for path in drawn.values()}
    assert len(pixels) == 3  # each its own image, none drawn over another
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        ["detections.json", *(p.name for p in drawn.values())]
    )


@pytest.mark.parametrize("threshold", ["2", "nan", "-0.5"])
def test_a_confidence_threshold_outside_0_to_1_is_refused(detector_weights, tmp_path, threshold):
    run = _demo([PORTRAIT], tmp_path / "out", detector_weights, "--confidence-threshold", threshold)
    assert_one_line_error(
        run, rf"--confidence-threshold={threshold}\S* is invalid; expected a score from 0 to 1"
    )
    assert not (tmp_path / "out").exists()  # nothing written, as before any work


def test_train_net_with_output_dir_a_file_ends_in_one_line(demo_root, tmp_path):
    file = tmp_path / "out"
    file.write_text("mine\n")
    run = _run(
        "train_net.py", "--config-file", DEMO_CONFIG, *TINY_DEMO_OPTS, "OUTPUT_DIR", file,
        env={"DETECTRON2_DATASETS": str(demo_root)},
    )  # fmt: skip
    _assert_one_line_error(run, r"OUTPUT_DIR='.*out' is a file; expected a folder")
    assert file.read_text() == "mine\n"


# -- a write that fails ------------------------------------------------------------------


def _full_disk(f):
    f.write(b"the first megabyte of a checkpoint")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_leaves_the_previous_file_and_no_temporary_one(tmp_path):
    target = tmp_path / "model_final.pth"
    target.write_bytes(b"the previous checkpoint")
    with pytest.raises(OutputError, match=r"cannot write .*model_final\.pth \(No space left"):
        write_atomically(target, _full_disk)
    assert target.read_bytes() == b"the previous checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_final.pth"]


def _file_size_limit(limit: int):
    """For a child process: writes past ``limit`` bytes fail as on a full disk (EFBIG from
    the kernel; the signal it would also send is ignored, as a full disk sends none)."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_train_net_saving_on_a_full_disk_ends_in_one_line_and_keeps_the_last_checkpoint(
    demo_root, tmp_path
):
    out = tmp_path / "out"
    out.mkdir()
    cfg = build_config(str(DEMO_CONFIG), TINY_DEMO_OPTS)
    SafeDetectionCheckpointer(build_model(cfg), save_dir=str(out)).save(
        "model_0000000", iteration=0
    )
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    run = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train_net.py"), "--config-file", str(DEMO_CONFIG),
         "--resume", *TINY_DEMO_OPTS, "SOLVER.MAX_ITER", "3", "SOLVER.CHECKPOINT_PERIOD", "1",
         "OUTPUT_DIR", str(out)],
        cwd=REPO, env={**os.environ, "DETECTRON2_DATASETS": str(demo_root)},
        capture_output=True, text=True, preexec_fn=_file_size_limit(1 << 20),
    )  # fmt: skip
    assert "Starting training from iteration 1" in run.stdout + run.stderr, run.stderr[-3000:]
    _assert_one_line_error(
        run, r"cannot write .*model_0000001\.pth \(File too large\); expected a writable folder"
    )
    kept = {p.name: p.read_bytes() for p in out.iterdir() if p.name in before}
    assert kept == before  # the checkpoint and last_checkpoint, as they were
    assert not list(out.glob("*.partial"))


def test_each_writer_has_its_own_temporary_file(tmp_path):
    """Two runs saving one checkpoint name must not write into one temporary file."""
    names = []
    for _ in range(2):
        write_atomically(tmp_path / "model_final.pth", lambda f: names.append(Path(f.name).name))
    assert names[0] != names[1]
    assert all(
        re.fullmatch(rf"model_final\.pth\.{os.getpid()}-[0-9a-f]{{8}}\.partial", n) for n in names
    )


def test_holding_a_folder_removes_what_killed_writers_left(tmp_path):
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    (tmp_path / "rpn").mkdir()
    abandoned = tmp_path / "rpn" / f"model_0000003.pth.{ended.pid}-0123abcd.partial"
    abandoned.write_bytes(b"half")
    live = tmp_path / f"model_0000004.pth.{os.getpid()}-0123abcd.partial"
    live.write_bytes(b"being written")
    mine = tmp_path / "notes.partial"
    mine.write_bytes(b"not ours")
    with exclusive_output_dir(tmp_path):
        pass
    assert not abandoned.exists() and live.exists() and mine.exists()


# -- one writer per output folder --------------------------------------------------------


def test_a_held_folder_is_refused_naming_the_holder(tmp_path):
    with exclusive_output_dir(tmp_path / "run"):
        with pytest.raises(OutputError, match=rf"in use by another run \(pid {os.getpid()}\)"):
            with exclusive_output_dir(tmp_path / "run"):
                pass
    with exclusive_output_dir(tmp_path / "run"):  # released with its holder
        pass


def test_the_bundled_demo_refuses_a_folder_in_use(demo_root, tmp_path):
    with exclusive_output_dir(tmp_path / "demo"):
        with pytest.raises(OutputError, match=r"OUTPUT_DIR='.*demo' is in use by another run"):
            train_demo(opts=[*TINY_DEMO_OPTS, "OUTPUT_DIR", str(tmp_path / "demo")], root=demo_root)
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == [".lock"]


def test_a_second_train_net_on_a_folder_in_use_ends_at_once(demo_root, tmp_path):
    out = tmp_path / "run"
    with exclusive_output_dir(out):  # the first run (this process)
        run = _run(
            "train_net.py", "--config-file", DEMO_CONFIG, *TINY_DEMO_OPTS, "DATASETS.TEST", "()",
            "OUTPUT_DIR", out, env={"DETECTRON2_DATASETS": str(demo_root)},
        )  # fmt: skip
    _assert_one_line_error(
        run, rf"OUTPUT_DIR='{re.escape(str(out))}' is in use by another run \(pid {os.getpid()}\)"
    )
    assert not (out / "last_checkpoint").exists()


# -- SIGTERM to the launcher of a multi-process run ----------------------------------------


def _workers(pid: int) -> list[int]:
    """The multiprocessing workers among ``pid``'s children (not its resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    workers = []
    for child in map(int, children):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in command:
            workers.append(child)
    return workers


def _gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_sigterm_to_the_launcher_ends_every_worker_and_keeps_the_checkpoint(demo_root, tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable, str(REPO / "tools" / "train_net.py"), "--num-gpus", "2",
        "--config-file", str(DEMO_CONFIG), *TINY_DEMO_OPTS, "SOLVER.MAX_ITER", "1000",
        "SOLVER.CHECKPOINT_PERIOD", "1", "DATASETS.TEST", "()", "OUTPUT_DIR", str(out),
    ]  # fmt: skip
    env = {**os.environ, "DETECTRON2_DATASETS": str(demo_root), "OMP_NUM_THREADS": "1"}
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr_file:
        launcher = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr_file
        )
    try:
        deadline = time.monotonic() + 600  # a hang guard, not a speed check
        while not (out / "last_checkpoint").exists():
            assert launcher.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.1)
        workers = _workers(launcher.pid)
        assert len(workers) == 2
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    stderr = log.read_text()
    assert launcher.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: train_net was stopped by SIGTERM; its 2 worker process(es)")
    assert all(_gone(pid) for pid in workers)  # ended before the launcher let go
    checkpoint = out / (out / "last_checkpoint").read_text()
    assert torch.load(checkpoint, weights_only=True)["iteration"] >= 0
    assert not list(out.glob("*.partial"))


def test_predicting_and_exporting_refuse_anchors_of_no_size(tmp_path):
    """As train_net does: an anchor of size 0 would give no detection, silently."""
    bad = ["MODEL.ANCHOR_GENERATOR.SIZES", "[[0], [32], [64], [128], [256]]"]
    for tool, flags in [
        ("tools/demo.py", ["--input", tmp_path, "--output", tmp_path / "out"]),
        ("tools/export_model.py", ["--output", tmp_path / "export"]),
    ]:
        run = run_cli(tool, "--config-file", DEMO_CONFIG, *flags, *bad, "MODEL.WEIGHTS", "x.pth")
        assert_one_line_error(run, r"MODEL\.ANCHOR_GENERATOR\.SIZES=")
        assert not (tmp_path / "out").exists() and not (tmp_path / "export").exists()
