"""ResNeXt-50 (32x4d) Faster R-CNN C4, as LazyConfig: the twin of faster_rcnn_X50_32x4d.yaml.

The paper's design (Sec. 5.4): the trunk stops at res4, res5 runs on every RoI. Table 8:
49.7 AP@0.5 / 27.5 AP on minival (with the two-step recipe of configs/appendix_b/).

    python tools/lazyconfig_train_net.py --config-file configs/faster_rcnn_X50_32x4d.py
"""

from .common.coco_training import dataloader, lr_multiplier, optimizer, train
from .common.resnext_models import c4 as model

model.backbone.stages.update(depth=50, num_groups=32, width_per_group=4)
# torchvision's ImageNet weights (RGB, ImageNet mean/std: the conventions of PIXEL in
# common/resnext_models.py), downloaded, checked and converted on first use.
train.init_checkpoint = "ResNeXt50_32X4D_Weights.IMAGENET1K_V1"

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
