#!/usr/bin/env python
"""The project's GPU check: CUDA tests, the demo trained on the GPU, the CPU agreeing, speed.

    python tools/gpu_check.py --output output/gpu_check      # or: make gpu-check

On a machine without CUDA it says so in one line and exits 2. On a GPU it runs, within
about 8 minutes on one H100/H200:

1. the tests that need CUDA (``pytest -m gpu``),
2. the demo detector trained on the GPU with AMP (bfloat16), evaluated on the GPU (a
   GroupNorm model: it runs contiguous, ``MEMORY_FORMAT`` refuses channels_last with GN),
3. the same weights evaluated on the CPU: COCO AP must agree within 0.5,
4. the training step of our ResNeXt-50 32x4d against our ResNet-50 (classifier, batch 64
   at 224 px, float32 and bfloat16 autocast): the ratio (target <= 1.15) and images/s.

Results go to ``<output>/gpu_check.json`` and ``<output>/gpu_check.md`` (for
docs/results/benchmarks.md).
"""

# First: importing resnext_det imports Detectron2 with its own import-time warnings quieted.
import resnext_det  # noqa: F401  isort: skip
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from resnext_det.reproduction.analysis.machine import machine_description
from resnext_det.utils.cli import run_tool
from resnext_det.utils.errors import UserError

REPO = Path(__file__).resolve().parents[1]
DEMO = "demo/faster_rcnn_X14_32x4d_demo.yaml"


class NoGPU(UserError):
    """The check needs CUDA."""


def run_cuda_tests(output: Path) -> dict:
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    (output / "gpu_tests.log").write_text(run.stdout + run.stderr)
    summary = (run.stdout.strip().splitlines() or ["no output"])[-1]
    return {"passed": run.returncode == 0, "summary": summary, "seconds": _since(start)}


def train_demo_on_gpu(output: Path, iterations: int) -> dict:
    from resnext_det.model_zoo import get_config_file
    from resnext_det.reproduction.data import prepare_demo_dataset
    from resnext_det.reproduction.engine import Trainer, build_config, register_all

    root = str(output / "datasets")
    prepare_demo_dataset(root)
    register_all(root)
    opts = [
        "MODEL.DEVICE", "cuda", "SOLVER.AMP.ENABLED", "True", "SOLVER.MAX_ITER", str(iterations),
        "SOLVER.STEPS", f"({int(iterations * 0.8)},)", "OUTPUT_DIR", str(output / "demo"),
    ]  # fmt: skip
    cfg = build_config(get_config_file(DEMO), opts)
    start = time.perf_counter()
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    results = trainer.train()
    seconds = _since(start)
    gpu = results["bbox"]
    cpu_cfg = build_config(
        get_config_file(DEMO),
        ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", str(output / "demo" / "model_final.pth")],
    )
    model = Trainer.build_model(cpu_cfg)
    from resnext_det.checkpoint import SafeDetectionCheckpointer

    SafeDetectionCheckpointer(model).load(cpu_cfg.MODEL.WEIGHTS)
    cpu = Trainer.test(cpu_cfg, model)["bbox"]
    return {
        "iterations": iterations,
        "train_and_eval_seconds": seconds,
        "seconds_per_iteration": seconds / iterations,
        "gpu_AP": gpu["AP"],
        "gpu_AP50": gpu["AP50"],
        "cpu_AP": cpu["AP"],
        "cpu_AP50": cpu["AP50"],
        "cpu_agrees": abs(gpu["AP"] - cpu["AP"]) <= 0.5 and abs(gpu["AP50"] - cpu["AP50"]) <= 0.5,
    }


def training_step_speed(repeats: int) -> dict:
    from resnext_det.modeling import ResNeXtSpec, build_resnext_classifier

    results = {}
    for label, dtype in (("float32", None), ("bfloat16", torch.bfloat16)):
        steps = {}
        for name, template in (("R50", (1, 64)), ("X50_32x4d", (32, 4))):
            model = build_resnext_classifier(ResNeXtSpec(50, *template, norm="BN")).cuda()
            model.to(memory_format=torch.channels_last)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            x = torch.randn(64, 3, 224, 224, device="cuda").contiguous(
                memory_format=torch.channels_last
            )
            target = torch.randint(0, 1000, (64,), device="cuda")

            def step(model=model, optimizer=optimizer, x=x, target=target, dtype=dtype):
                with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=bool(dtype)):
                    loss = torch.nn.functional.cross_entropy(model(x)["linear"], target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

            steps[name] = step
        times = {name: [] for name in steps}
        for step in steps.values():  # warm-up: cuDNN picks its algorithms
            for _ in range(3):
                step()
        torch.cuda.synchronize()
        for _ in range(repeats):
            for name, step in steps.items():  # interleaved
                start = time.perf_counter()
                step()
                torch.cuda.synchronize()
                times[name].append(time.perf_counter() - start)
        median = {name: sorted(t)[len(t) // 2] for name, t in times.items()}
        results[label] = {
            "ms_per_step": {name: 1000 * t for name, t in median.items()},
            "images_per_second": {name: 64 / t for name, t in median.items()},
            "X50_over_R50": median["X50_32x4d"] / median["R50"],
        }
    return results


def _since(start: float) -> float:
    return round(time.perf_counter() - start, 1)


def render(results: dict) -> str:
    lines = [
        f"### GPU check ({results['date']})",
        "",
        f"Machine: {results['machine']}. `make gpu-check` (`tools/gpu_check.py`).",
        "",
        f"- CUDA tests: {results['cuda_tests']['summary']}",
    ]
    demo = results["demo"]
    lines.append(
        f"- Demo on the GPU (AMP bfloat16), {demo['iterations']} iterations: "
        f"{demo['seconds_per_iteration']:.3f} s per iteration with evaluation; AP "
        f"{demo['gpu_AP']:.1f} / AP50 {demo['gpu_AP50']:.1f} on the GPU, {demo['cpu_AP']:.1f} / "
        f"{demo['cpu_AP50']:.1f} on the CPU ({'agree' if demo['cpu_agrees'] else 'DISAGREE'})"
    )
    lines += ["", "| training step, batch 64 at 224 | R50 (ms) | X50 32x4d (ms) | X50/R50 "
              "(target <= 1.15) | images/s R50 / X50 |", "|---|---|---|---|---|"]  # fmt: skip
    for label, r in results["speed"].items():
        ms, ips = r["ms_per_step"], r["images_per_second"]
        lines.append(
            f"| {label} | {ms['R50']:.1f} | {ms['X50_32x4d']:.1f} | {r['X50_over_R50']:.2f} | "
            f"{ips['R50']:.0f} / {ips['X50_32x4d']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", default="output/gpu_check")
    parser.add_argument("--iterations", type=int, default=700, help="demo training iterations")
    parser.add_argument("--repeats", type=int, default=20, help="timed training steps")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise NoGPU(
            "make gpu-check needs a CUDA GPU, and torch.cuda.is_available() is False on this "
            "machine; expected a machine with an NVIDIA GPU (see docs/results/benchmarks.md)"
        )
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    results = {"date": time.strftime("%Y-%m-%d"), "machine": machine_description()}
    results["cuda_tests"] = run_cuda_tests(output)
    results["speed"] = training_step_speed(args.repeats)
    results["demo"] = train_demo_on_gpu(output, args.iterations)
    (output / "gpu_check.json").write_text(json.dumps(results, indent=2))
    (output / "gpu_check.md").write_text(render(results))
    print(render(results))
    ok = results["cuda_tests"]["passed"] and results["demo"]["cpu_agrees"]
    return 0 if ok else 1


if __name__ == "__main__":
    run_tool(main)
