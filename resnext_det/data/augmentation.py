"""Training augmentation: Detectron2's resize and flip, plus quarter turns for overhead images."""

import numpy as np
from detectron2.config import CfgNode
from detectron2.data import transforms as T
from detectron2.data.detection_utils import build_augmentation
from fvcore.transforms.transform import NoOpTransform, Transform

__all__ = ["RandomRotation90", "Rotate90Transform", "build_train_augmentation"]


class Rotate90Transform(Transform):
    """Rotate by ``k`` quarter turns counter-clockwise, exactly (no interpolation)."""

    def __init__(self, k: int, height: int, width: int):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.rot90(img, self.k, axes=(0, 1)))

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        x, y = coords[:, 0].copy(), coords[:, 1].copy()
        h, w = self.height, self.width
        turned = (
            {1: (y, w - x), 2: (w - x, h - y), 3: (h - y, x)}[self.k % 4] if self.k % 4 else (x, y)
        )
        coords[:, 0], coords[:, 1] = turned
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self.apply_image(segmentation)

    def inverse(self) -> Transform:
        turned_h, turned_w = (self.width, self.height) if self.k % 2 else (self.height, self.width)
        return Rotate90Transform((4 - self.k) % 4, turned_h, turned_w)


class RandomRotation90(T.Augmentation):
    """A uniformly random multiple of 90 degrees. With a horizontal flip this reaches all
    eight orientations of an image, which overhead imagery (no "up") can afford."""

    def get_transform(self, image: np.ndarray) -> Transform:
        k = int(np.random.randint(4))
        return Rotate90Transform(k, *image.shape[:2]) if k else NoOpTransform()


def build_train_augmentation(cfg: CfgNode) -> list[T.Augmentation]:
    """Detectron2's training augmentation, plus :class:`RandomRotation90` when
    ``INPUT.RANDOM_ROTATE_90`` is on."""
    augmentation = build_augmentation(cfg, is_train=True)
    if cfg.INPUT.get("RANDOM_ROTATE_90", False):
        augmentation.append(RandomRotation90())
    return augmentation
