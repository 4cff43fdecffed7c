"""LazyConfig training parts: Detectron2's COCO data, SGD, "1x" schedule and train settings,
with the RGB input of the ResNeXt weights. Train on coco_2017_train (= the paper's
trainval35k), test on coco_2017_val (= minival)."""

from detectron2.model_zoo import get_config

dataloader = get_config("common/data/coco.py").dataloader
dataloader.train.mapper.image_format = "RGB"
dataloader.train.mapper.use_instance_mask = False
optimizer = get_config("common/optim.py").SGD
lr_multiplier = get_config("common/coco_schedule.py").lr_multiplier_1x
train = get_config("common/train.py").train
train.max_iter = 90000
