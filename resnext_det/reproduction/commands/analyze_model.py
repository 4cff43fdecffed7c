"""Parameters and FLOPs (multiply-adds of conv and fc layers, the paper's count).

    python tools/analyze_model.py --depth 50 --template 32x4d       # ImageNet classifier, 224 px
    python tools/analyze_model.py --depth 101 --template 64x4d --backbone --input-size 800x1333
    python tools/analyze_model.py --config-file configs/faster_rcnn_X50_32x4d.yaml \\
        --input-size 800x1333                                        # a whole detector
    python tools/analyze_model.py --paper                            # Tables 1, 2, 4, 7
    python tools/analyze_model.py --paper --json                     # for machines

The count runs the model on an image of the size given; a size that would take more
memory than this machine has is refused in one line (exit code 2).
"""

import argparse
import json
import os
import re

from resnext_det.modeling import FEATURE_NAMES, ResNeXtSpec
from resnext_det.reproduction.analysis import (
    backbone_complexity,
    classifier_complexity,
    detector_complexity,
    paper_tables,
    render_markdown,
)
from resnext_det.reproduction.engine import build_config, register_all
from resnext_det.utils.cli import run_tool
from resnext_det.utils.errors import ConfigError

# What running a model on an image takes, a pixel: measured 470 bytes for a ResNeXt-50
# 32x4d FPN detector between 800x1333 and 1600x2666, 320 for the X101-64x4d classifier.
BYTES_PER_PIXEL = 500


def _template(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)d", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is no template; expected C x d as in 32x4d")
    return int(match[1]), int(match[2])


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if match is None or 0 in (int(match[1]), int(match[2])):  # 0 pixels: a conv traceback
        raise argparse.ArgumentTypeError(
            f"{text!r} is no size; expected HEIGHTxWIDTH of at least 1x1, e.g. 800x1333"
        )
    return int(match[1]), int(match[2])


def _check_memory(height: int, width: int) -> None:
    """Refuse a size the analysis cannot run on this machine: it runs the model on an
    image of that size, and would end in an allocation traceback or be killed."""
    needed = height * width * BYTES_PER_PIXEL
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > memory:
        raise ConfigError(
            f"--input-size {height}x{width} would take about {needed / 1e9:,.0f} GB of memory "
            f"to run the model on (about {BYTES_PER_PIXEL} bytes a pixel), more than this "
            f"machine's {memory / 1e9:,.0f} GB; expected a smaller size"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--paper", action="store_true", help="Tables 1, 2, 4, 7 beside ours")
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--template", type=_template, default=(32, 4), help="C x d, e.g. 32x4d")
    parser.add_argument("--backbone", action="store_true", help="the detection backbone")
    parser.add_argument(
        "--out-features", nargs="+", default=["res5"], choices=FEATURE_NAMES[1:], metavar="STAGE"
    )
    parser.add_argument("--config-file", help="a detector config: the whole detector")
    parser.add_argument("--input-size", type=_size, default=None, help="HEIGHTxWIDTH")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args()

    if args.paper:
        tables = paper_tables()
        if args.json:
            print(json.dumps({t.title: t.as_records() for t in tables}, indent=2))
        else:
            print(render_markdown(tables))
        return 0

    if args.config_file:
        register_all()
        height, width = args.input_size or (800, 1333)
        _check_memory(height, width)
        cfg = build_config(args.config_file, ["MODEL.DEVICE", "cpu", *args.opts])
        what = f"detector {args.config_file} ({ResNeXtSpec.from_config(cfg)}) on {height}x{width}"
        complexity = detector_complexity(cfg, height, width)
    else:
        cardinality, width_d = args.template
        spec = ResNeXtSpec(args.depth, cardinality, width_d, norm="BN")
        if args.backbone:
            height, width = args.input_size or (800, 1333)
            _check_memory(height, width)
            what = f"backbone {spec} to {args.out_features[-1]} on {height}x{width}"
            complexity = backbone_complexity(spec, height, width, args.out_features)
        else:
            size = (args.input_size or (224, 224))[0]
            _check_memory(size, size)
            what = f"ImageNet classifier {spec} on {size}x{size}"
            complexity = classifier_complexity(spec, size)
    if args.json:
        print(json.dumps({"model": what, **complexity.as_dict()}))
    else:
        print(
            f"{what}: {complexity.params_m:.2f} M parameters, {complexity.gflops:.2f} GFLOPs "
            f"(multiply-adds of conv and fc layers; {complexity.all_flops / 1e9:.2f} with norms "
            "and pooling)"
        )
    return 0


def cli() -> None:
    """The command line (``python tools/analyze_model.py``, ``resnext-analyze-model``)."""
    run_tool(main)
