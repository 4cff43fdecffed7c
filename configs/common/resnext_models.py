"""LazyConfig models: Detectron2's common R-CNN models with ResNeXt stages, for the configs beside.

The values are those of Base-RCNN-FPN-ResNeXt.yaml and Base-RCNN-C4-ResNeXt.yaml: the
paper's stride in the 3x3 conv, FrozenBN, res2 frozen, RGB input normalized by the
ImageNet mean and std (the convention of the ResNeXt weights). Change the network through
``stages`` (``depth``, ``num_groups`` = C, ``width_per_group`` = d); the C4 head's res5
follows the trunk's values. The RoI poolers are ``SparseROIPooler``: RoIAlign as sparse
products on the CPU (MODEL.RESNEXT.SPARSE_ROI_ALIGN of the yaml configs; set a pooler's
``_target_`` back to Detectron2's ``ROIPooler`` for torchvision's kernel).
"""

from detectron2.model_zoo import get_config

from resnext_det.modeling import SparseROIPooler, use_resnext

# RGB, ImageNet statistics scaled to [0, 255] (fb.resnet.torch, torchvision).
PIXEL = dict(
    pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375], input_format="RGB"
)


def _resnext(model):
    """The paper's X50-32x4d, stride in the 3x3 conv, FrozenBN, stem and res2 frozen."""
    use_resnext(model, depth=50, num_groups=32, width_per_group=4, stride_in_1x1=False)
    trunk = model.backbone.get("bottom_up", model.backbone)
    trunk.freeze_at = 2
    model.update(PIXEL)
    return model


# Faster R-CNN with FPN (Detectron2's common Mask R-CNN FPN model, masks off).
fpn = _resnext(get_config("common/models/mask_rcnn_fpn.py").model)
fpn.roi_heads.mask_in_features = None
fpn.roi_heads.mask_pooler = None
fpn.roi_heads.mask_head = None
fpn.roi_heads.box_pooler._target_ = SparseROIPooler

# Mask R-CNN with FPN.
mask_fpn = _resnext(get_config("common/models/mask_rcnn_fpn.py").model)
mask_fpn.roi_heads.box_pooler._target_ = SparseROIPooler
mask_fpn.roi_heads.mask_pooler._target_ = SparseROIPooler

# Faster R-CNN C4, as the paper plugs the ResNeXt in (Sec. 5.4): the trunk stops at res4,
# res5 runs on every RoI in the head.
c4 = _resnext(get_config("common/models/mask_rcnn_c4.py").model)
c4.proposal_generator.pre_nms_topk = (12000, 6000)
c4.proposal_generator.post_nms_topk = (2000, 1000)
c4.roi_heads.pooler._target_ = SparseROIPooler
c4.roi_heads.mask_head = None
