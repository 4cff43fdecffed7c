"""Model helpers the tests share."""

import torch
from detectron2.layers import FrozenBatchNorm2d

__all__ = ["randomize_norms"]


def randomize_norms(model, seed=0):
    """Frozen norms with statistics of a trained network (a fresh one's are the identity)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, FrozenBatchNorm2d):
                for tensor, low in [
                    (module.weight, 0.5),
                    (module.bias, -0.2),
                    (module.running_mean, -0.2),
                    (module.running_var, 0.5),
                ]:
                    tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.5 + low)
    return model
