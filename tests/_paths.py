"""Paths the tests share."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
DEMO_CONFIG = CONFIGS / "demo" / "faster_rcnn_X14_32x4d_demo.yaml"

# Shrinks the demo config to seconds per run on 2 CPU cores: same code paths, tiny sizes.
TINY_DEMO_OPTS = [
    "MODEL.RESNETS.DEPTH",
    "14",
    "MODEL.FPN.OUT_CHANNELS",
    "64",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
    "32",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "128",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN",
    "200",
    "MODEL.RESNETS.RES2_OUT_CHANNELS",
    "64",
    "INPUT.CROP.SIZE",
    "[128, 128]",
    "INPUT.MIN_SIZE_TRAIN",
    "(128,)",
    "INPUT.MAX_SIZE_TRAIN",
    "128",
    "INPUT.MIN_SIZE_TEST",
    "128",
    "INPUT.MAX_SIZE_TEST",
    "128",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.MAX_ITER",
    "2",
    "SOLVER.WARMUP_ITERS",
    "1",
    "SOLVER.STEPS",
    "()",
]
