"""COCO evaluation speed-up, tools/demo.py and tools/plot_metrics.py on real files."""

import json
import subprocess
import sys
from pathlib import Path
from unittest.mock import patch

import matplotlib
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes, BoxMode, Instances
from matplotlib.axes import Axes
from PIL import Image

from resnext_det.checkpoint import SafeDetectionCheckpointer
from resnext_det.modeling import ResNeXtSpec
from resnext_det.reproduction.analysis import cifar_complexity
from resnext_det.reproduction.analysis.plots import complexity_figure, metrics_figures, read_metrics
from resnext_det.reproduction.engine import build_config
from resnext_det.reproduction.engine.coco_evaluation import COCOEvaluator, fastest_cocoeval

from ._paths import DEMO_CONFIG, REPO, TINY_DEMO_OPTS


def _noisy_detections(records, seed=0):
    """Ground truth boxes moved by a few pixels, plus false alarms, with random scores."""
    rng = np.random.default_rng(seed)
    outputs = []
    for record in records:
        boxes = [
            BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
            for a in record["annotations"]
        ]
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        boxes = boxes + rng.normal(0, 4, boxes.shape).astype(np.float32)
        false_alarms = rng.uniform(0, 300, (10, 2)).astype(np.float32)
        boxes = np.concatenate([boxes, np.hstack([false_alarms, false_alarms + 40])])
        instances = Instances((record["height"], record["width"]))
        instances.pred_boxes = Boxes(torch.as_tensor(boxes))
        instances.scores = torch.as_tensor(rng.uniform(0.05, 1, len(boxes)), dtype=torch.float32)
        instances.pred_classes = torch.zeros(len(boxes), dtype=torch.long)
        outputs.append({"instances": instances})
    return outputs


def test_faster_coco_eval_gives_the_numbers_of_pycocotools(demo_root):
    records = DatasetCatalog.get("demo_trees_val")
    outputs = _noisy_detections(records)
    results = {}
    for implementation in ("pycocotools", "faster-coco-eval"):
        evaluator = COCOEvaluator("demo_trees_val", implementation=implementation)
        evaluator.reset()
        evaluator.process([{"image_id": r["image_id"]} for r in records], outputs)
        results[implementation] = evaluator.evaluate()["bbox"]
    assert 10 < results["pycocotools"]["AP"] < 90  # a non-trivial case
    assert results["faster-coco-eval"] == pytest.approx(
        results["pycocotools"],
        abs=1e-9,
        nan_ok=True,  # APl: no large trees in the val photo
    )
    assert fastest_cocoeval("auto").__module__.startswith("faster_coco_eval")
    with pytest.raises(ValueError, match="implementation='fast' is unknown"):
        fastest_cocoeval("fast")


@pytest.fixture(scope="module")
def detector_weights(tmp_path_factory):
    cfg = build_config(str(DEMO_CONFIG), TINY_DEMO_OPTS)
    model = build_model(cfg)
    path = tmp_path_factory.mktemp("weights")
    SafeDetectionCheckpointer(model, save_dir=str(path)).save("model_final")
    return path / "model_final.pth"


def test_demo_tool_draws_and_lists_detections(demo_root, detector_weights, tmp_path):
    val = sorted((demo_root / "demo_trees" / "val").iterdir())[:2]
    portrait = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in val:
        (folder / path.name).write_bytes(path.read_bytes())
    run = subprocess.run(
        [
            sys.executable, str(REPO / "tools" / "demo.py"), "--config-file", str(DEMO_CONFIG),
            "--input", str(folder), str(portrait), "--output", str(tmp_path / "out"),
            "--confidence-threshold", "0.0", *TINY_DEMO_OPTS, "MODEL.WEIGHTS", str(detector_weights),
        ],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    detections = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert [Path(d["file_name"]).name for d in detections] == [p.name for p in val] + [
        portrait.name
    ]
    for record in detections:
        drawn = tmp_path / "out" / f"{Path(record['file_name']).stem}_pred.png"
        with Image.open(drawn) as image:
            assert image.size == (record["width"], record["height"])
        for detection in record["detections"]:
            x0, y0, x1, y1 = detection["bbox_xyxy"]
            assert 0 <= x0 <= x1 <= record["width"] and 0 <= y0 <= y1 <= record["height"]
            assert detection["category"] == "tree" and 0 <= detection["score"] <= 1
    assert sum(len(d["detections"]) for d in detections) > 0


def test_plot_metrics_of_detection_and_pretraining(tmp_path):
    detection = tmp_path / "det" / "metrics.json"
    detection.parent.mkdir()
    lines = [
        {"iteration": i, "total_loss": 2.0 / (i + 1), "loss_cls": 1.0, "lr": 0.02} for i in range(5)
    ]
    lines.append({"iteration": 4, "bbox/AP": 12.5, "bbox/AP50": 30.1, "bbox/AP75": 8.0})
    detection.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    written = metrics_figures(detection, tmp_path / "plots")
    assert sorted(p.name for p in written) == ["ap.png", "losses.png", "lr.png"]
    for path in written:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 300

    pretraining = tmp_path / "pre" / "metrics.json"
    pretraining.parent.mkdir()
    pretraining.write_text(
        json.dumps({"iteration": 1, "epoch": 0.5, "total_loss": 1.2, "lr": 0.1}) + "\n"
        + json.dumps({"iteration": 2, "epoch": 1.0, "total_loss": 1.1, "lr": 0.1,
                      "top1_err": 50.0, "top5_err": 10.0}) + "\n"
    )  # fmt: skip
    names = [p.name for p in metrics_figures(pretraining, tmp_path / "plots2")]
    assert "error.png" in names

    broken = tmp_path / "broken.json"
    broken.write_text('{"iteration": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"broken\.json:2 is not JSON"):
        read_metrics(broken)


def _pretraining_run(folder, *opts):
    """A run folder as tools/pretrain_imagenet.py leaves it: its whole config, its metrics."""
    from resnext_det.reproduction.pretrain import get_pretrain_cfg

    folder.mkdir()
    cfg = get_pretrain_cfg()
    cfg.merge_from_list(list(opts))
    (folder / "config.yaml").write_text(cfg.dump())
    (folder / "metrics.json").write_text(json.dumps({"iteration": 5, "epoch": 2, "top1_err": 40.0}))
    return folder, cfg


def test_complexity_figure_with_a_pretraining_run(tmp_path):
    run, _ = _pretraining_run(
        tmp_path / "X14_run",
        "MODEL.RESNETS.DEPTH",
        14,
        "MODEL.NUM_CLASSES",
        3,
        "INPUT.TEST_CROP",
        64,
    )
    cifar, cifar_cfg = _pretraining_run(
        tmp_path / "cifar_run", "MODEL.ARCH", "cifar", "MODEL.NUM_CLASSES", 10,
        "MODEL.RESNETS.NUM_GROUPS", 2, "DATA.FORMAT", "cifar10",
    )  # fmt: skip
    figure = tmp_path / "figure.png"
    with patch.object(Axes, "scatter", autospec=True, side_effect=Axes.scatter) as scatter:
        path = complexity_figure(figure, runs=[run, cifar], with_paper=False)
    with Image.open(path) as image:
        assert image.format == "PNG"
    # Each run on the axes of its kind: the CIFAR net against parameters, not ImageNet FLOPs.
    drawn = {
        call.args[0].get_title().split(":")[0]: call.args[1] for call in scatter.call_args_list
    }
    assert set(drawn) == {"ImageNet-1K", "CIFAR-10"}
    params = cifar_complexity(ResNeXtSpec.from_config(cifar_cfg), 10).params_m
    assert drawn["CIFAR-10"] == pytest.approx(params)

    cifar100, _ = _pretraining_run(
        tmp_path / "c100",
        "MODEL.ARCH",
        "cifar",
        "MODEL.NUM_CLASSES",
        100,
        "DATA.FORMAT",
        "cifar100",
    )
    with pytest.raises(
        ValueError, match=r"c100 is a CIFAR network trained on DATA.FORMAT='cifar100'"
    ):
        complexity_figure(tmp_path / "other.png", runs=[cifar100], with_paper=False)
    assert not (tmp_path / "other.png").exists()
