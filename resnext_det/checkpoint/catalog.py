"""The published ImageNet weights that ``MODEL.WEIGHTS`` may name, and what each one is.

One small table, read from the installed torchvision and Detectron2 rather than copied
from them: torchvision's weight enums give the names, URLs and ImageNet accuracies of its
ResNets and ResNeXts (their input conventions are the converter's for torchvision files);
Detectron2's model-zoo configs give the ``detectron2://`` names of its ImageNet weights
together with the input conventions Detectron2 trains them with.
"""

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import detectron2
from detectron2.config import get_cfg
from detectron2.utils.file_io import Detectron2Handler

from .rename import IMAGENET_RGB, InputConventions

__all__ = [
    "DETECTRON2_PREFIX",
    "PublishedWeights",
    "find_published",
    "is_published_name",
    "published_for_network",
    "published_weights",
]

DETECTRON2_PREFIX = Detectron2Handler.PREFIX  # "detectron2://"

# The torchvision builders of the family (depth, cardinality C, bottleneck width d): the
# network is in the builder's name; the weights, URLs and accuracies are torchvision's.
TORCHVISION_NETWORKS = {
    "resnet50": (50, 1, 64),
    "resnet101": (101, 1, 64),
    "resnet152": (152, 1, 64),
    "resnext50_32x4d": (50, 32, 4),
    "resnext101_32x8d": (101, 32, 8),
    "resnext101_64x4d": (101, 64, 4),
}
# Detectron2's model-zoo configs that train from each of its ImageNet weights (MSRA's
# FAIR's X-101-32x8d): each names the file and sets its conventions.
DETECTRON2_ZOO_CONFIGS = (
    "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml",
    "COCO-Detection/faster_rcnn_R_101_FPN_3x.yaml",
    "COCO-Detection/faster_rcnn_X_101_32x8d_FPN_3x.yaml",
)
# "ResNeXt50_32X4D_Weights.IMAGENET1K_V1": torchvision's way of naming weights.
_TORCHVISION_NAME = re.compile(r"\w+_Weights\.\w+")


@dataclass(frozen=True)
class PublishedWeights:
    """One published ImageNet weight file.

    Attributes:
        name: what ``MODEL.WEIGHTS`` says to use it.
        url: where its publisher serves it (https).
        source: who publishes it and so its format: 'torchvision' or 'detectron2'.
        network: (depth, cardinality C, bottleneck width d).
        conventions: the input the weights were trained on.
        top1: ImageNet-1K top-1 accuracy (%) as its publisher gives it, if it does.
    """

    name: str
    url: str
    source: str
    network: tuple[int, int, int]
    conventions: InputConventions
    top1: Optional[float] = None

    def describe(self) -> str:
        """e.g. ``ResNeXt-50 32x4d from torchvision, 77.6% top-1``."""
        depth, groups, width = self.network
        family = "ResNet" if groups == 1 else "ResNeXt"
        accuracy = f", {self.top1:.1f}% top-1" if self.top1 is not None else ""
        return f"{family}-{depth} {groups}x{width}d from {self.source}{accuracy}"


def _torchvision_weights() -> list[PublishedWeights]:
    from torchvision.models import get_model_weights

    found = []
    for builder, network in TORCHVISION_NETWORKS.items():
        enum = get_model_weights(builder)
        for weights in enum:
            found.append(
                PublishedWeights(
                    name=f"{enum.__name__}.{weights.name}",
                    url=weights.url,
                    source="torchvision",
                    network=network,
                    conventions=IMAGENET_RGB,  # the converter's conventions for torchvision
                    top1=weights.meta["_metrics"]["ImageNet-1K"]["acc@1"],
                )
            )
    return found


def _detectron2_weights() -> list[PublishedWeights]:
    # The files detectron2.model_zoo.get_config_file finds, without its pkg_resources
    # (whose deprecation warning would precede every run).
    zoo = Path(detectron2.__file__).parent / "model_zoo" / "configs"
    found = []
    for config in DETECTRON2_ZOO_CONFIGS:
        cfg = get_cfg()
        cfg.merge_from_file(str(zoo / config))
        resnets = cfg.MODEL.RESNETS
        found.append(
            PublishedWeights(
                name=cfg.MODEL.WEIGHTS,
                url=Detectron2Handler.S3_DETECTRON2_PREFIX
                + cfg.MODEL.WEIGHTS[len(DETECTRON2_PREFIX) :],
                source="detectron2",
                network=(resnets.DEPTH, resnets.NUM_GROUPS, resnets.WIDTH_PER_GROUP),
                conventions=InputConventions(
                    cfg.INPUT.FORMAT,
                    tuple(cfg.MODEL.PIXEL_MEAN),
                    tuple(cfg.MODEL.PIXEL_STD),
                    bool(resnets.STRIDE_IN_1X1),
                ),
            )
        )
    return found


@functools.cache
def published_weights() -> tuple[PublishedWeights, ...]:
    """Every published weight file the project knows by name, torchvision's first."""
    return (*_torchvision_weights(), *_detectron2_weights())


def is_published_name(name: str) -> bool:
    """Whether ``name`` is written as a published name (torchvision's ``X_Weights.Y``)."""
    return bool(_TORCHVISION_NAME.fullmatch(name))


def find_published(name: str) -> Optional[PublishedWeights]:
    """The published weights that ``name`` means: their name, their URL, or a torchvision
    alias of them (``ResNeXt50_32X4D_Weights.DEFAULT``); None if it means none."""
    for weights in published_weights():
        if name in (weights.name, weights.url):
            return weights
    if is_published_name(name):
        from torchvision.models import get_weight

        try:
            url = get_weight(name).url
        except (ValueError, KeyError, AttributeError):  # torchvision's ways to say "unknown"
            return None
        return next((w for w in published_weights() if w.url == url), None)
    return None


def published_for_network(depth: int, groups: int, width: int) -> list[PublishedWeights]:
    """The published weights of a network, in the order of :func:`published_weights`."""
    return [w for w in published_weights() if w.network == (depth, groups, width)]
