"""ResNeXt-50 (32x4d) Faster R-CNN with FPN, as LazyConfig: twin of faster_rcnn_X50_32x4d_FPN.yaml.

python tools/lazyconfig_train_net.py --config-file configs/faster_rcnn_X50_32x4d_FPN.py
"""

from .common.coco_training import dataloader, lr_multiplier, optimizer, train
from .common.resnext_models import fpn as model

model.backbone.bottom_up.stages.update(depth=50, num_groups=32, width_per_group=4)
# torchvision's ImageNet weights (RGB, ImageNet mean/std: the conventions of PIXEL in
# common/resnext_models.py), downloaded, checked and converted on first use.
train.init_checkpoint = "ResNeXt50_32X4D_Weights.IMAGENET1K_V1"

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
