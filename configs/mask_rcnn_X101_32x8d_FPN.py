"""ResNeXt-101 (32x8d) Mask R-CNN with FPN, as LazyConfig: the twin of
mask_rcnn_X101_32x8d_FPN.yaml (the model of Detectron2's own ResNeXt zoo, RGB weights).

    python tools/lazyconfig_train_net.py --config-file configs/mask_rcnn_X101_32x8d_FPN.py
"""

from .common.coco_training import dataloader, lr_multiplier, optimizer, train
from .common.resnext_models import mask_fpn as model

model.backbone.bottom_up.stages.update(depth=101, num_groups=32, width_per_group=8)
dataloader.train.mapper.use_instance_mask = True
# torchvision's ImageNet weights (RGB, ImageNet mean/std: the conventions of PIXEL in
# common/resnext_models.py), downloaded, checked and converted on first use.
train.init_checkpoint = "ResNeXt101_32X8D_Weights.IMAGENET1K_V1"

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
