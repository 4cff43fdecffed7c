"""Plot training curves and error against complexity, to PNG files.

    python tools/plot_metrics.py output/demo/metrics.json            # losses, lr, AP
    python tools/plot_metrics.py output/imagenet/X50_32x4d/metrics.json   # losses, lr, errors
    python tools/plot_metrics.py --complexity                         # Figs. 5/7 style
    python tools/plot_metrics.py --complexity --runs output/imagenet/X50_32x4d output/imagenet/R50

Reads Detectron2's metrics.json (train_net, the Appendix-B steps, pretraining).
--complexity plots the paper's top-1 errors against our computed FLOPs (Tables 3 and 4)
and CIFAR-10 error against model size (Table 7), with your own pretraining runs beside
them on the axes of their kind (a run folder holds config.yaml and metrics.json; a CIFAR
run on other data than CIFAR-10 is refused, naming it).
"""

import argparse
from pathlib import Path

from resnext_det.reproduction.analysis.plots import complexity_figure, metrics_figures
from resnext_det.utils.atomic_io import check_output_dir
from resnext_det.utils.cli import run_tool


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("metrics", nargs="*", help="metrics.json files")
    parser.add_argument("--complexity", action="store_true", help="error against complexity")
    parser.add_argument("--runs", nargs="*", default=[], help="pretraining run folders")
    parser.add_argument(
        "--output", default=None, help="folder for the PNGs (default: beside each metrics file)"
    )
    args = parser.parse_args()
    if not args.metrics and not args.complexity:
        parser.error("give metrics files, --complexity, or both")
    if args.output:
        check_output_dir(args.output, "--output")  # before reading anything

    for path in map(Path, args.metrics):
        output = Path(args.output) / path.parent.name if args.output else path.parent / "plots"
        for written in metrics_figures(path, output):
            print(f"wrote {written}")
    if args.complexity:
        output = Path(args.output or "output/plots") / "error_vs_complexity.png"
        print(f"wrote {complexity_figure(output, args.runs)}")


def cli() -> None:
    """The command line (``python tools/plot_metrics.py``, ``resnext-plot-metrics``)."""
    run_tool(main)
