"""Quarter turns move boxes with the pixels, exactly."""

import numpy as np
import pytest

from resnext_det.data.augmentation import (
    RandomRotation90,
    Rotate90Transform,
    build_train_augmentation,
)
from resnext_det.engine import build_config

from ._paths import CONFIGS


def _box_of_white(image: np.ndarray) -> list:
    rows, cols = np.nonzero(image)
    return [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_boxes_follow_the_pixels(k):
    image = np.zeros((30, 50), dtype=np.uint8)
    box = np.array([[5, 7, 18, 12]], dtype=np.float64)  # x0, y0, x1, y1
    image[7:12, 5:18] = 255
    transform = Rotate90Transform(k, *image.shape)
    turned = transform.apply_image(image)
    assert turned.shape == ((50, 30) if k % 2 else (30, 50))
    assert transform.apply_box(box.copy())[0].tolist() == _box_of_white(turned)
    back = transform.inverse()
    assert np.array_equal(back.apply_image(turned), image)
    assert np.allclose(back.apply_box(transform.apply_box(box.copy())), box)


def test_random_rotation_reaches_all_quarter_turns():
    np.random.seed(0)
    image = np.zeros((8, 6, 3), dtype=np.uint8)
    shapes = {RandomRotation90().get_transform(image).apply_image(image).shape for _ in range(40)}
    assert shapes == {(8, 6, 3), (6, 8, 3)}


def test_config_switch():
    demo = build_config(str(CONFIGS / "demo" / "faster_rcnn_X50_32x4d_demo.yaml"))
    demo.INPUT.RANDOM_ROTATE_90 = True
    assert isinstance(build_train_augmentation(demo)[-1], RandomRotation90)
    demo.INPUT.RANDOM_ROTATE_90 = False
    assert not any(isinstance(a, RandomRotation90) for a in build_train_augmentation(demo))
