"""ResNeXt-101 (32x8d) Mask R-CNN with FPN, as LazyConfig: the twin of
mask_rcnn_X101_32x8d_FPN.yaml (the model of Detectron2's own ResNeXt zoo, RGB weights).

    python tools/lazyconfig_train_net.py --config-file configs/mask_rcnn_X101_32x8d_FPN.py \
        train.init_checkpoint=/path/to/imagenet_x101_32x8d.pth
"""

from .common.coco_training import dataloader, lr_multiplier, optimizer, train
from .common.resnext_models import mask_fpn as model

model.backbone.bottom_up.stages.update(depth=101, num_groups=32, width_per_group=8)
dataloader.train.mapper.use_instance_mask = True

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
