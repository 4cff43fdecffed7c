"""The ``MODEL.RESNEXT`` config node: the one home of every ResNeXt option."""

from detectron2.config import CfgNode as CN

__all__ = ["add_resnext_config"]


def add_resnext_config(cfg: CN) -> CN:
    """Add ``MODEL.RESNEXT`` with the paper's ResNeXt-50 (32x4d) as defaults.

    Values are checked when the model is built (:class:`ResNeXtSpec`), where an invalid
    one raises a ``ValueError`` naming its key. Calling this twice leaves the node as is.

    Args:
        cfg: a Detectron2 config, e.g. from ``detectron2.config.get_cfg()``.

    Returns:
        The same ``cfg``, for chaining.
    """
    if "RESNEXT" in cfg.MODEL:
        return cfg
    _C = cfg
    _C.MODEL.RESNEXT = CN()
    # 50, 101, 152 (Table 1); 14 and 26 are reduced depths for CPU-sized runs.
    _C.MODEL.RESNEXT.DEPTH = 50
    # The template C x d: C paths of width d in res2. 1x64d is ResNet.
    _C.MODEL.RESNEXT.CARDINALITY = 32
    _C.MODEL.RESNEXT.BOTTLENECK_WIDTH = 4
    # Fig. 3: "a" split-transform-sum, "b" early concatenation, "c" grouped conv (fast).
    _C.MODEL.RESNEXT.BLOCK_FORM = "c"
    # The paper downsamples in the 3x3 conv; True puts the stride in the first 1x1
    # (MSRA-style ResNet weights).
    _C.MODEL.RESNEXT.STRIDE_IN_1X1 = False
    # FrozenBN, BN, SyncBN or GN (32 groups), after every conv.
    _C.MODEL.RESNEXT.NORM = "FrozenBN"
    # 0: train all; 1: freeze the stem; k >= 2: also res2 .. res{k}. This key, not
    # MODEL.BACKBONE.FREEZE_AT, is the one the ResNeXt backbones read.
    _C.MODEL.RESNEXT.FREEZE_AT = 2
    # Features the trunk returns; it stops at the last one. ["res4"] is the C4 trunk;
    # FPN needs ["res2", "res3", "res4", "res5"].
    _C.MODEL.RESNEXT.OUT_FEATURES = ["res4"]
    _C.MODEL.RESNEXT.STEM_OUT_CHANNELS = 64
    _C.MODEL.RESNEXT.RES2_OUT_CHANNELS = 256
    return cfg
