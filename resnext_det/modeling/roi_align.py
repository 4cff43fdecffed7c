"""RoIAlign on the CPU as two sparse matrix products: the same values, several times faster.

torchvision's CPU RoIAlign scatters its gradient one sample at a time on one thread: in
the demo's training step (2 cores) its backward took 16% of the step, more than the whole
backbone's forward. RoIAlign is linear in its input: each output bin is a fixed weighted
sum of input pixels (bilinear weights of its sampling points), so with the RoIs known it
is a sparse matrix ``M`` (bins x pixels): the forward is ``M @ x``, the backward
``M.T @ grad``, both multi-threaded sparse products. ``docs/design/speed.md`` has the
measurements. Exact up to float summation order (tested against torchvision, values and
gradients), fixed and adaptive sampling alike; used on CPU tensors, elsewhere (GPU, half
precision, tracing and export) torchvision's kernel runs as before.
"""

import warnings
from typing import Any

import torch
from detectron2.config import CfgNode
from detectron2.layers import ROIAlign
from detectron2.modeling.poolers import ROIPooler
from torchvision.ops import roi_align

from ..config import resnext_options
from ..utils.errors import ConfigError
from ..utils.value_checks import boolean, require

__all__ = [
    "SPARSE_ROI_HEADS",
    "SparseROIAlign",
    "SparseROIPooler",
    "check_sparse_roi_align",
    "roi_align_matrix",
    "sparse_roi_align",
    "use_sparse_levels",
]

SPARSE_KEY = "MODEL.RESNEXT.SPARSE_ROI_ALIGN"


def roi_align_matrix(
    rois: torch.Tensor,
    input_shape: tuple[int, int, int, int],
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    """The sparse ``(R * PH * PW, N * H * W)`` matrix of RoIAlign's bilinear weights.

    Row ``(r, ph, pw)`` holds the weights with which bin ``(ph, pw)`` of RoI ``r`` averages
    the pixels ``(n, y, x)`` of a channels-last input: torchvision's sampling points, its
    border rule (points beyond one pixel outside the map count zero, others are clamped to
    it) and its division by the number of points. With adaptive sampling (ratio 0) each RoI
    has its own number of points per bin, ``ceil(RoI side / bins)``; the RoIs are computed
    in groups of one grid size and their entries placed in RoI order.

    Args:
        rois: ``(R, 5)`` rows ``(image index, x1, y1, x2, y2)`` in input-image pixels.
        input_shape: ``(N, C, H, W)`` of the feature map.
        output_size: ``(PH, PW)`` bins per RoI.
        spatial_scale: feature-map pixels per image pixel.
        sampling_ratio: sampling points per bin side, or 0 for torchvision's adaptive rule.
        aligned: shift by half a pixel (Detectron2's ROIAlignV2) or not (ROIAlign).
    """
    n, _, height, width = input_shape
    ph, pw = output_size
    offset = 0.5 if aligned else 0.0
    image = rois[:, 0].long()
    x1, y1, x2, y2 = (rois[:, i] * spatial_scale - offset for i in range(1, 5))
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # torchvision's legacy rule: RoIs at least one pixel wide
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    if sampling_ratio > 0:
        points = torch.full((len(rois), 2), sampling_ratio, dtype=torch.long)
    else:
        points = torch.stack([(roi_h / ph).ceil(), (roi_w / pw).ceil()], dim=1).long()
    per_bin = points.prod(dim=1) * 4  # entries of a row: 4 neighbours of each point
    per_roi = per_bin * (ph * pw)
    roi_starts = per_roi.cumsum(0) - per_roi
    groups, group_of = points.unique(dim=0, return_inverse=True)
    # Each group's entries go to their RoIs' places, so that rows follow the RoIs.
    pixels = torch.empty(int(per_roi.sum()), dtype=torch.long)
    weights = torch.empty(len(pixels), dtype=rois.dtype)
    for index, (sy, sx) in enumerate(groups.tolist()):
        rows = (group_of == index).nonzero().squeeze(1)
        # Sampling points, in bins from the RoI's corner: (k + 0.5) / s for k < PH * s.
        steps_y = (torch.arange(ph * sy, dtype=rois.dtype) + 0.5) / sy
        steps_x = (torch.arange(pw * sx, dtype=rois.dtype) + 0.5) / sx
        y = y1[rows, None] + steps_y * (roi_h[rows] / ph)[:, None]  # (R, PH * sy)
        x = x1[rows, None] + steps_x * (roi_w[rows] / pw)[:, None]  # (R, PW * sx)
        y_index, y_weight = _bilinear_axis(y, height)  # (R, PH * sy, 2)
        x_index, x_weight = _bilinear_axis(x, width)
        # (R, PH*sy, PW*sx, 2, 2): the four neighbours of each point.
        pixel = image[rows, None, None, None, None] * height + y_index[:, :, None, :, None]
        pixel = pixel * width + x_index[:, None, :, None, :]
        weight = y_weight[:, :, None, :, None] * x_weight[:, None, :, None, :]
        weight = weight / max(sy * sx, 1)
        # Bins first, then their sy * sx points and 4 neighbours: a row per bin.
        shape, bins_first = (len(rows), ph, sy, pw, sx, 2, 2), (0, 1, 3, 2, 4, 5, 6)
        pixel = pixel.reshape(shape).permute(bins_first).reshape(len(rows), -1)
        weight = weight.reshape(shape).permute(bins_first).reshape(len(rows), -1)
        at = roi_starts[rows, None] + torch.arange(pixel.shape[1])
        pixels[at], weights[at] = pixel, weight
    row_starts = torch.zeros(len(rois) * ph * pw + 1, dtype=torch.long)
    row_starts[1:] = per_bin.repeat_interleave(ph * pw).cumsum(0)
    size = (len(rois) * ph * pw, n * height * width)
    with warnings.catch_warnings():  # "CSR support is in beta": we use only its products
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(row_starts, pixels, weights, size, check_invariants=False)


def _bilinear_axis(v: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's ``bilinear_interpolate`` along one axis: two indices, two weights."""
    inside = (v >= -1.0) & (v <= size)
    v = v.clamp(min=0.0)
    low = v.floor().long()
    at_end = low >= size - 1
    low = torch.where(at_end, size - 1, low)
    high = torch.where(at_end, size - 1, low + 1)
    frac = torch.where(at_end, 0.0, v - low.to(v.dtype))
    weight = torch.stack([1.0 - frac, frac], dim=-1) * inside[..., None]
    return torch.stack([low, high], dim=-1), weight


def _sparse_product(matrix: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """``matrix @ dense`` written into one new buffer: ``torch.sparse.mm`` allocates its
    result twice (measured: twice the output's memory at its peak, and up to 1.6x slower)."""
    out = torch.empty(matrix.shape[0], dense.shape[1], dtype=dense.dtype)
    return torch.addmm(out, matrix, dense, beta=0, out=out)


class _SparseROIAlignFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, rois, output_size, spatial_scale, sampling_ratio, aligned):
        n, c, h, w = x.shape
        matrix = roi_align_matrix(
            rois, x.shape, output_size, spatial_scale, sampling_ratio, aligned
        )
        pixels = x.permute(0, 2, 3, 1).reshape(n * h * w, c)  # a view for channels_last
        out = _sparse_product(matrix, pixels)
        ctx.save_for_backward(matrix)
        ctx.input_shape = x.shape
        # Contiguous, as torchvision's: the heads see the layout Detectron2's model gives them.
        return out.view(len(rois), *output_size, c).permute(0, 3, 1, 2).contiguous()

    @staticmethod
    def backward(ctx, grad_out):
        (matrix,) = ctx.saved_tensors
        n, c, h, w = ctx.input_shape
        bins = grad_out.permute(0, 2, 3, 1).reshape(-1, c)
        grad = _sparse_product(matrix.t(), bins)
        return grad.view(n, h, w, c).permute(0, 3, 1, 2), None, None, None, None, None


class SparseROIAlign(ROIAlign):
    """Detectron2's ``ROIAlign`` computed as sparse products on the CPU (see the module).

    Same arguments, no parameters: a model's checkpoints are unchanged. Scripting,
    tracing and export see Detectron2's ``ROIAlign`` (torchvision's op).
    """

    def forward(self, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        assert rois.dim() == 2 and rois.size(1) == 5
        if input.is_quantized:
            input = input.dequantize()
        rois = rois.to(dtype=input.dtype)
        if not torch.jit.is_scripting():  # TorchScript compiles only the lines after this block
            if _sparse_applies(input):
                return _SparseROIAlignFunction.apply(
                    input,
                    rois,
                    tuple(self.output_size),
                    float(self.spatial_scale),
                    int(self.sampling_ratio),
                    bool(self.aligned),
                )
        # Detectron2's ROIAlign.forward, spelled out: TorchScript cannot compile super().
        return roi_align(
            input,
            rois,
            self.output_size,
            self.spatial_scale,
            self.sampling_ratio,
            self.aligned,
        )


def _sparse_applies(x: torch.Tensor) -> bool:
    """On the CPU in float32/64, not being traced or compiled (which want torchvision's op)."""
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
    )


def use_sparse_levels(pooler: ROIPooler) -> ROIPooler:
    """Give a freshly built ``pooler`` :class:`SparseROIAlign` levels in place of its
    ``ROIAlign`` ones (same arguments; RoIPool and rotated levels stay). Returns it."""
    for index, level in enumerate(pooler.level_poolers):
        if type(level) is ROIAlign:  # noqa: E721  (exactly: a subclass may compute otherwise)
            pooler.level_poolers[index] = SparseROIAlign(
                level.output_size, level.spatial_scale, level.sampling_ratio, level.aligned
            )
    return pooler


class SparseROIPooler(ROIPooler):
    """Detectron2's ``ROIPooler`` whose RoIAlign levels are :class:`SparseROIAlign`.

    Same arguments as ``ROIPooler``. For LazyConfig models, where a pooler's ``_target_``
    carries the choice (``configs/common/resnext_models.py``); the yaml configs choose
    with ``MODEL.RESNEXT.SPARSE_ROI_ALIGN`` and the RoI heads of ours.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        use_sparse_levels(self)


# The meta-architectures that build RoI heads (ROI_HEADS_REGISTRY), and ours that honour
# MODEL.RESNEXT.SPARSE_ROI_ALIGN.
_WITH_ROI_HEADS = ("GeneralizedRCNN", "PanopticFPN")
SPARSE_ROI_HEADS = ("ResNeXtRes5ROIHeads", "ResNeXtStandardROIHeads")


def sparse_roi_align(cfg: CfgNode) -> bool:
    """``MODEL.RESNEXT.SPARSE_ROI_ALIGN``, checked to be True or False."""
    enabled = resnext_options(cfg)["SPARSE_ROI_ALIGN"]
    require(SPARSE_KEY, enabled, boolean())
    return enabled


def check_sparse_roi_align(cfg: CfgNode) -> None:
    """Refuse ``SPARSE_ROI_ALIGN: True`` where the model's RoI heads would ignore it.

    A model without RoI heads (an RPN alone, RetinaNet) pools nothing, so the key changes
    nothing there and is accepted.

    Raises:
        ConfigError: naming the key and the RoI heads that ignore it.
    """
    if not sparse_roi_align(cfg) or cfg.MODEL.META_ARCHITECTURE not in _WITH_ROI_HEADS:
        return
    heads = cfg.MODEL.ROI_HEADS.NAME
    if heads not in SPARSE_ROI_HEADS:
        raise ConfigError(
            f"{SPARSE_KEY}=True is honoured by the RoI heads {' and '.join(SPARSE_ROI_HEADS)}, "
            f"but MODEL.ROI_HEADS.NAME={heads!r}; expected one of them, or {SPARSE_KEY} False"
        )
