"""Convert ResNeXt weights into Detectron2 weights for the ResNeXt backbones, exactly.

    python tools/convert_weights.py output/imagenet/X50_32x4d/model_final.pth X50_32x4d.pth
    python tools/convert_weights.py resnext50_32x4d-1a0047aa.pth X50_32x4d_tv.pth  # torchvision
    python tools/convert_weights.py model.safetensors X50_timm.pth --source timm
    python tools/convert_weights.py X-101-32x8d.pkl X101_32x8d.pth         # Detectron2 model zoo
    python tools/convert_weights.py ResNeXt50_32X4D_Weights.IMAGENET1K_V1 X50_32x4d.pth
    python tools/convert_weights.py detectron2://ImageNetPretrained/MSRA/R-50.pkl R50.pth

Sources: this project's pretraining checkpoints, torchvision and timm ResNet/ResNeXt state
dicts (.pth or .safetensors), Detectron2's model-zoo ImageNet .pkl files (Caffe2 names).
Files are read without running code in them. The tool reports every source key it did
not convert, refuses shape mismatches, writes the weights and, beside them, a config
snippet with their input conventions (RGB or BGR, pixel mean and std, stride placement),
and checks that the converted backbone computes the source model's features on a test
input, printing the largest difference. A published name (torchvision's, e.g.
ResNeXt50_32X4D_Weights.IMAGENET1K_V1), a detectron2:// or an https:// URL is downloaded
first into the usual cache and checked, as for MODEL.WEIGHTS (docs/guides/usage.md); detection
configs can name these directly, without converting by hand.

What it writes, and what it never replaces: OUTPUT and, beside it, OUTPUT's name with
.yaml (the snippet). Before reading anything it refuses, in one line and with exit code 2,
an OUTPUT or snippet that is the source file, an OUTPUT named *.yaml (its snippet would
overwrite it), and an existing OUTPUT or snippet that an earlier conversion did not write
(weights saved by this tool; the snippet of a conversion to the same OUTPUT) unless
--overwrite is given. Weights holding NaN or inf are refused, naming the tensor. If the
feature check fails (exit code 1), nothing is written.
"""

import argparse
import sys

from resnext_det.checkpoint import (
    SOURCES,
    check_outputs,
    compare_features,
    convert,
    fetch_weights,
    read_weight_file,
    write_detectron2_weights,
)
from resnext_det.checkpoint.verify import TOLERANCE
from resnext_det.utils.cli import run_tool
from resnext_det.utils.errors import ConfigError


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source_file", help="weights to convert: a file, a published name or a URL")
    parser.add_argument("output", help="Detectron2 weights to write (.pth)")
    parser.add_argument("--source", choices=SOURCES, default="auto", help="source format")
    parser.add_argument(
        "--caffe2-style",
        choices=("msra", "fair"),
        default=None,
        help="conventions of a Caffe2 .pkl (default: msra for ResNets, fair for ResNeXts)",
    )
    parser.add_argument(
        "--keep-classifier", action="store_true", help="keep the fc layer (as linear.*)"
    )
    parser.add_argument(
        "--check-size", type=int, default=224, help="side of the test input (0: no check)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing OUTPUT or snippet that an earlier conversion did not write",
    )
    args = parser.parse_args()

    if args.check_size < 0:  # before any work; torch would fail on a negative side
        raise ConfigError(
            f"--check-size={args.check_size} is invalid; expected an integer >= 0 (0: no check)"
        )
    check_outputs(args.output, args.source_file, args.overwrite)  # before any work
    source_file = fetch_weights(args.source_file)  # downloaded first if a name or a URL
    check_outputs(args.output, str(source_file), args.overwrite)  # never the cached source
    data, guessed = read_weight_file(str(source_file))
    conversion = convert(data, args.source, args.caffe2_style, args.keep_classifier)
    conv = conversion.conventions
    print(f"source: {conversion.source} (guessed {guessed}); network: {conversion.spec}")
    print(
        f"input conventions: {conv.format}, pixel mean {list(conv.pixel_mean)}, std "
        f"{list(conv.pixel_std)}, stride in the {'1x1' if conv.stride_in_1x1 else '3x3'} conv"
    )
    print(
        f"converted {len(conversion.weights)} tensors; unmatched source keys: "
        f"{len(conversion.unmatched)}"
    )
    for key in conversion.unmatched:
        print(f"  not converted: {key}")
    if args.check_size:
        comparison = compare_features(conversion, data, size=args.check_size)
        print(comparison.summary())
        if not comparison.exact:  # NaN included
            print(
                f"error: the converted features differ from the source's by more than "
                f"{TOLERANCE:g} of their scale; the conversion is wrong, and nothing was written",
                file=sys.stderr,
            )
            return 1
    weights, snippet = write_detectron2_weights(conversion, args.output, args.overwrite)
    print(f"wrote {weights} and its config snippet {snippet}")
    return 0


def cli() -> None:
    """The command line (``python tools/convert_weights.py``, ``resnext-convert-weights``)."""
    run_tool(main)
