"""Top-k error of a classifier, over all its classes and over a subset of them (Table 6)."""

from collections.abc import Sequence
from typing import Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from ...utils.errors import DataError

__all__ = ["evaluate_classifier", "topk_wrong"]


def topk_wrong(
    logits: torch.Tensor,
    targets: torch.Tensor,
    ks: Sequence[int] = (1, 5),
    classes: Optional[Sequence[int]] = None,
) -> torch.Tensor:
    """How many samples have their target outside the top ``k`` predictions, for each ``k``.

    Args:
        logits: ``(N, num_classes)`` scores.
        targets: ``(N,)`` class indices.
        ks: the ``k`` of each count; a ``k`` above the number of classes counts no error.
        classes: score as a ``len(classes)``-way classifier: only these classes compete
            (the softmax of the paper's 1K-way test of 5K-way models covers the 1K classes
            only, Table 6). Every target must be one of them.

    Returns:
        A float64 tensor of ``len(ks)`` counts (float so that counts can be all-reduced).
    """
    if classes is not None:
        classes_t = torch.as_tensor(list(classes), device=logits.device)
        position = torch.full((logits.shape[1],), -1, dtype=torch.long, device=logits.device)
        position[classes_t] = torch.arange(len(classes_t), device=logits.device)
        targets = position[targets]
        if (targets < 0).any():
            raise DataError("a target lies outside the class subset; expected targets among it")
        logits = logits[:, classes_t]
    k_max = min(max(ks), logits.shape[1])
    top = logits.topk(k_max, dim=1).indices
    hit = top == targets[:, None]
    return torch.tensor(
        [float(len(targets) - hit[:, : min(k, k_max)].any(dim=1).sum().item()) for k in ks],
        dtype=torch.float64,
    )


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    subset: Optional[Sequence[int]] = None,
    autocast_dtype: Optional[torch.dtype] = None,
) -> dict[str, float]:
    """Top-1 and top-5 error (%) of ``model`` on ``loader``, summed over all processes.

    Args:
        model: returns a dict with the logits under ``"linear"``.
        loader: this process's share of the evaluation images (each image once overall).
        device: where the model runs.
        subset: class indices; when given, ``top1_err_subset`` and ``top5_err_subset`` also
            score the model as a ``len(subset)``-way classifier.
        autocast_dtype: run under autocast with this dtype (None: full precision).

    Returns:
        ``top1_err``, ``top5_err`` (and the subset errors), in percent, and ``images``.
    """
    was_training = model.training
    model.eval()
    counts = torch.zeros(5, dtype=torch.float64)  # images, top1, top5, subset top1, top5
    try:
        for images, targets in loader:
            images = images.to(device, non_blocking=True)
            with torch.autocast(
                device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
            ):
                logits = model(images)["linear"].float().cpu()
            counts[0] += len(targets)
            counts[1:3] += topk_wrong(logits, targets)
            if subset is not None:
                counts[3:5] += topk_wrong(logits, targets, classes=subset)
    finally:
        model.train(was_training)
    if dist.is_available() and dist.is_initialized():
        counts = counts.to(device)  # NCCL reduces GPU tensors only
        dist.all_reduce(counts)
        counts = counts.cpu()
    images = max(counts[0].item(), 1.0)
    errors = {
        "top1_err": 100 * counts[1].item() / images,
        "top5_err": 100 * counts[2].item() / images,
    }
    if subset is not None:
        errors["top1_err_subset"] = 100 * counts[3].item() / images
        errors["top5_err_subset"] = 100 * counts[4].item() / images
    errors["images"] = int(counts[0].item())
    return errors
