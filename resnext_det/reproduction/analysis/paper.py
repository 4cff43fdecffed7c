"""The paper's numbers (``../shared/PAPER.md``), in one place, for comparisons and figures."""

from dataclasses import dataclass
from typing import Optional

__all__ = [
    "PAPER_CIFAR",
    "PAPER_IMAGENET",
    "PAPER_TABLE_2",
    "PAPER_TABLE_2_GFLOPS",
    "PAPER_TABLE_2_PARAMS",
    "PAPER_TABLE_8",
    "PaperModel",
]


@dataclass(frozen=True)
class PaperModel:
    """One network of the paper and what its tables say of it.

    Attributes:
        table: where the numbers come from.
        name: the paper's name of the network.
        depth: 50, 101, 200 (ImageNet) or 29 (CIFAR).
        cardinality: C.
        width: d, the bottleneck width of one path in the first stage.
        params_m: parameters, millions (None where the paper gives none).
        gflops: multiply-adds, billions (None where the paper gives none).
        approximate: the paper gives the complexity as "~" for a whole group of models.
        top1_err: ImageNet-1K top-1 error (%), single 224 crop; CIFAR-10 test error for
            the CIFAR networks.
        top5_err: ImageNet-1K top-5 error (%); CIFAR-100 test error for CIFAR networks.
    """

    table: str
    name: str
    depth: int
    cardinality: int
    width: int
    params_m: Optional[float] = None
    gflops: Optional[float] = None
    approximate: bool = False
    top1_err: Optional[float] = None
    top5_err: Optional[float] = None

    @property
    def template(self) -> str:
        return f"{self.cardinality}x{self.width}d"


# Tables 1, 3 and 4 (ImageNet-1K, 224 crop). Table 3's groups have "~4.1 billion FLOPs"
# (50 layers) and "~7.8 billion FLOPs" (101 layers), Fig. 5 adds "~25 / ~44 million
# parameters"; Table 4's 2x-complexity models have "~15 billion FLOPs".
PAPER_IMAGENET = (
    PaperModel("Table 1", "ResNet-50", 50, 1, 64, 25.5, 4.1, False, 23.9),
    PaperModel("Table 3", "ResNeXt-50", 50, 2, 40, 25.0, 4.1, True, 23.0),
    PaperModel("Table 3", "ResNeXt-50", 50, 4, 24, 25.0, 4.1, True, 22.6),
    PaperModel("Table 3", "ResNeXt-50", 50, 8, 14, 25.0, 4.1, True, 22.3),
    PaperModel("Table 1", "ResNeXt-50", 50, 32, 4, 25.0, 4.2, False, 22.2),
    PaperModel("Table 4", "ResNet-101", 101, 1, 64, 44.0, 7.8, True, 22.0, 6.0),
    PaperModel("Table 3", "ResNeXt-101", 101, 2, 40, 44.0, 7.8, True, 21.7),
    PaperModel("Table 3", "ResNeXt-101", 101, 4, 24, 44.0, 7.8, True, 21.4),
    PaperModel("Table 3", "ResNeXt-101", 101, 8, 14, 44.0, 7.8, True, 21.3),
    PaperModel("Table 4", "ResNeXt-101", 101, 32, 4, 44.0, 7.8, True, 21.2, 5.6),
    PaperModel("Table 4", "ResNet-200", 200, 1, 64, None, 15.0, True, 21.7, 5.8),
    PaperModel("Table 4", "ResNet-101, wider", 101, 1, 100, None, 15.0, True, 21.3, 5.7),
    PaperModel("Table 4", "ResNeXt-101", 101, 2, 64, None, 15.0, True, 20.7, 5.5),
    PaperModel("Table 4", "ResNeXt-101", 101, 64, 4, None, 15.0, True, 20.4, 5.3),
)

# Table 7 (CIFAR, ResNeXt-29): parameters, CIFAR-10 and CIFAR-100 test error (%).
PAPER_CIFAR = (
    PaperModel("Table 7", "ResNeXt-29", 29, 8, 64, 34.4, None, False, 3.65, 17.77),
    PaperModel("Table 7", "ResNeXt-29", 29, 16, 64, 68.1, None, False, 3.58, 17.31),
)

# Table 2: templates of conv2 with "~70k" parameters and "~0.22 billion" FLOPs
# (# params x 56 x 56); (C, d) -> width of the group conv.
PAPER_TABLE_2 = {(1, 64): 64, (2, 40): 80, (4, 24): 96, (8, 14): 112, (32, 4): 128}
PAPER_TABLE_2_PARAMS = 70e3
PAPER_TABLE_2_GFLOPS = 0.22

# Table 8 (COCO minival, C4, two-step): (depth, cardinality, width) -> (model, AP@0.5, AP).
PAPER_TABLE_8 = {
    (50, 1, 64): ("ResNet-50 1x64d", 47.6, 26.5),
    (50, 32, 4): ("ResNeXt-50 32x4d", 49.7, 27.5),
    (101, 1, 64): ("ResNet-101 1x64d", 51.1, 29.8),
    (101, 32, 4): ("ResNeXt-101 32x4d", 51.9, 30.0),
}
