"""datasets/prepare_imagenet.py on a small ILSVRC2012-shaped tree: devkit, flat val, checks."""

import tarfile

import numpy as np
import pytest
from scipy.io import savemat

from resnext_det.reproduction.pretrain.imagenet import check_imagenet, read_devkit, sort_val_images

from ._photos import PHOTOS, photo_crops
from ._tools import run_cli

# ILSVRC2012_ID -> WNID of the leaf classes; id 4 is an inner node of the hierarchy.
LEAVES = {1: "n01440764", 2: "n01443537", 3: "n01484850"}
GROUND_TRUTH = [2, 1, 3, 3, 1, 2, 1]  # class id of ILSVRC2012_val_00000001.JPEG, ...


def _write_devkit(folder):
    data = folder / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True)
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children"]
    records = [(i, w, f"class {i}", "", 0, np.zeros(0)) for i, w in LEAVES.items()]
    records.append((4, "n00000004", "inner node", "", 3, np.array([1, 2, 3])))
    synsets = np.array(records, dtype=[(f, object) for f in fields])
    savemat(str(data / "meta.mat"), {"synsets": synsets})
    truth = data / "ILSVRC2012_validation_ground_truth.txt"
    truth.write_text("".join(f"{label}\n" for label in GROUND_TRUTH))
    return folder / "ILSVRC2012_devkit_t12"


def _write_imagenet(root, train_per_class=2):
    photos = sorted(PHOTOS)
    for index, wnid in enumerate(LEAVES.values()):
        (root / "train" / wnid).mkdir(parents=True)
        for i, crop in enumerate(photo_crops(photos[index], train_per_class, 48, index)):
            crop.save(root / "train" / wnid / f"{wnid}_{i}.JPEG")
    (root / "val").mkdir()
    for number, label in enumerate(GROUND_TRUTH, start=1):
        crop = photo_crops(photos[label - 1], 1, 48, 100 + number)[0]
        crop.save(root / "val" / f"ILSVRC2012_val_{number:08d}.JPEG")
    return root


def _prepare(*args):
    return run_cli("datasets/prepare_imagenet.py", *args)


def test_devkit_is_read_from_folder_and_archive(tmp_path):
    devkit = _write_devkit(tmp_path)
    classes, labels = read_devkit(devkit)
    assert classes == LEAVES and labels == GROUND_TRUTH
    archive = tmp_path / "ILSVRC2012_devkit_t12.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(devkit, arcname="ILSVRC2012_devkit_t12")
    assert read_devkit(archive) == (LEAVES, GROUND_TRUTH)


def test_val_images_are_sorted_by_the_ground_truth(tmp_path):
    root = _write_imagenet(tmp_path / "imagenet")
    devkit = _write_devkit(tmp_path)
    assert "unsorted images" in " ".join(check_imagenet(root, expect_full=False))
    run = _prepare("--root", root, "--devkit", devkit, "--allow-subset")
    assert run.returncode == 0, run.stderr
    assert "sorted 7 val images" in run.stdout and "ready" in run.stdout
    for number, label in enumerate(GROUND_TRUTH, start=1):
        assert (root / "val" / LEAVES[label] / f"ILSVRC2012_val_{number:08d}.JPEG").is_file()
    assert sort_val_images(root, devkit) == 0  # a second run has nothing left to move


def test_an_interrupted_sort_finishes_on_a_second_run(tmp_path):
    root = _write_imagenet(tmp_path / "imagenet")
    devkit = _write_devkit(tmp_path)
    # As if killed after the first two moves.
    for number in (1, 2):
        (root / "val" / LEAVES[GROUND_TRUTH[number - 1]]).mkdir(exist_ok=True)
        name = f"ILSVRC2012_val_{number:08d}.JPEG"
        (root / "val" / name).rename(root / "val" / LEAVES[GROUND_TRUTH[number - 1]] / name)
    assert sort_val_images(root, devkit) == 5
    assert check_imagenet(root, expect_full=False) == []


def test_each_problem_is_one_clear_line(tmp_path):
    root = _write_imagenet(tmp_path / "imagenet")
    sort_val_images(root, _write_devkit(tmp_path))
    (root / "train" / "n01484850.tar").write_bytes(b"")
    (root / "val" / "n09999999").mkdir()
    (root / "val" / "n09999999" / "x.JPEG").write_bytes(b"")
    run = _prepare("--root", root)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    errors = run.stderr.strip().splitlines()
    expected = [
        "holds 1 unextracted class archives (e.g. n01484850.tar)",
        "has 1 classes that train lacks (e.g. n09999999)",
        "train has 3 class folders; expected 1000",
        "train has 6 images; expected 1281167",
        "val has 8 images; expected 50000",
    ]
    for text in expected:
        assert any(text in line for line in errors), (text, errors)
    assert all(line.startswith("error: ") for line in errors)


def test_missing_splits_and_devkit(tmp_path):
    assert check_imagenet(tmp_path, expect_full=False) == [
        f"{tmp_path / 'train'} does not exist; expected train/<wnid>/<image>",
        f"{tmp_path / 'val'} does not exist; expected val/<wnid>/<image>",
    ]
    run = _prepare("--root", tmp_path, "--devkit", tmp_path / "nowhere")
    assert run.returncode == 2
    assert (
        run.stderr.strip()
        == f"error: {tmp_path / 'nowhere'} does not exist; expected the ILSVRC2012 devkit"
    )


@pytest.mark.parametrize("bad", [[9], [1, 1, 1]])
def test_a_ground_truth_that_does_not_fit_is_refused(tmp_path, bad):
    devkit = _write_devkit(tmp_path)
    (devkit / "data" / "ILSVRC2012_validation_ground_truth.txt").write_text(
        "".join(f"{label}\n" for label in bad)
    )
    root = _write_imagenet(tmp_path / "imagenet")
    with pytest.raises(ValueError, match=r"class ids \[9\]|outside the ground truth's 1\.\.3"):
        sort_val_images(root, devkit)
