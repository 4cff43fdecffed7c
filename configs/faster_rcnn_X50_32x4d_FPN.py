"""ResNeXt-50 (32x4d) Faster R-CNN with FPN, as LazyConfig: twin of faster_rcnn_X50_32x4d_FPN.yaml.

    python tools/lazyconfig_train_net.py --config-file configs/faster_rcnn_X50_32x4d_FPN.py \
        train.init_checkpoint=/path/to/imagenet_x50_32x4d.pth
"""

from .common.coco_training import dataloader, lr_multiplier, optimizer, train
from .common.resnext_models import fpn as model

model.backbone.bottom_up.stages.update(depth=50, num_groups=32, width_per_group=4)

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
