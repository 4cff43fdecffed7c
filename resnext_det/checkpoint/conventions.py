"""Do a config's input conventions match those of the weights it starts from?

Weights expect the input they were trained on: RGB or BGR, a pixel mean and std, and the
stride of a downsampling block in its 1x1 or in its 3x3 conv. A detector configured
otherwise still loads them and trains, several AP worse, and nothing says why; so a
mismatch is refused before the run, naming each key and the value it needs. The
conventions of the weights are known for published names (:mod:`.catalog`) and for files
the converter wrote (:func:`~.resolve.resolve_weights`); for others nothing is checked.
"""

import math
from collections.abc import Iterator, Sequence
from typing import Any

from detectron2.config import CfgNode
from omegaconf import DictConfig, ListConfig, OmegaConf

from ..utils.errors import ConfigError
from .rename import InputConventions
from .resolve import resolve_weights

__all__ = [
    "check_config_conventions",
    "check_conventions",
    "check_lazy_config_conventions",
    "describe_conventions",
]


def describe_conventions(conventions: InputConventions) -> str:
    """e.g. ``RGB input, pixel mean [123.675, 116.28, 103.53] and std [...], stride in
    the 3x3 conv``."""
    stride = "1x1" if conventions.stride_in_1x1 else "3x3"
    return (
        f"{conventions.format} input, pixel mean {list(conventions.pixel_mean)} and std "
        f"{list(conventions.pixel_std)}, stride in the {stride} conv"
    )


def _agrees(value: Any, expected: Any) -> bool:
    if isinstance(expected, tuple):  # pixel statistics, written to a few decimals
        try:
            values = [float(v) for v in value]
        except (TypeError, ValueError):
            return False
        return len(values) == len(expected) and all(
            math.isclose(v, e, abs_tol=1e-3) for v, e in zip(values, expected)
        )
    return value == expected


def _shown(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def check_conventions(
    weights: InputConventions, given: Sequence[tuple[str, str, Any]], what: str
) -> None:
    """Raise unless each config value agrees with the conventions of the weights.

    Args:
        weights: the conventions of the weights.
        given: the config's values, as (field of :class:`InputConventions`, the config key
            that sets it, its value); a field may appear under several keys.
        what: how the weights are named, e.g. ``"MODEL.WEIGHTS='...'"``.

    Raises:
        ConfigError: naming every key that disagrees, its value and the value to set.
    """
    wrong = [
        (key, value, getattr(weights, field))
        for field, key, value in given
        if not _agrees(value, getattr(weights, field))
    ]
    if wrong:
        found = ", ".join(f"{key}={_shown(value)!r}" for key, value, _ in wrong)
        wanted = ", ".join(f"{key}={_shown(expected)!r}" for key, _, expected in wrong)
        raise ConfigError(
            f"{what} was trained with {describe_conventions(weights)}, but the config has "
            f"{found}; expected {wanted} (with other conventions the weights still load and "
            "train, several AP worse)"
        )


def check_config_conventions(cfg: CfgNode) -> None:
    """A yaml config's input conventions (``INPUT.FORMAT``, ``MODEL.PIXEL_MEAN/STD``,
    ``MODEL.RESNETS.STRIDE_IN_1X1``) are those of the weights in ``MODEL.WEIGHTS``."""
    what = f"MODEL.WEIGHTS={cfg.MODEL.WEIGHTS!r}"
    conventions = resolve_weights(cfg.MODEL.WEIGHTS, what).conventions
    if conventions is not None:
        given = [
            ("format", "INPUT.FORMAT", cfg.INPUT.FORMAT),
            ("pixel_mean", "MODEL.PIXEL_MEAN", list(cfg.MODEL.PIXEL_MEAN)),
            ("pixel_std", "MODEL.PIXEL_STD", list(cfg.MODEL.PIXEL_STD)),
            ("stride_in_1x1", "MODEL.RESNETS.STRIDE_IN_1X1", cfg.MODEL.RESNETS.STRIDE_IN_1X1),
        ]
        check_conventions(conventions, given, what)


def _keys_named(node: Any, name: str, path: str) -> Iterator[tuple[str, Any]]:
    """Every (dotted key, value) named ``name`` in a LazyConfig tree."""
    if isinstance(node, DictConfig):
        for key, value in node.items():
            if key == name:
                yield f"{path}.{key}", value
            else:
                yield from _keys_named(value, name, f"{path}.{key}")
    elif isinstance(node, ListConfig):
        for index, value in enumerate(node):
            yield from _keys_named(value, name, f"{path}.{index}")


def check_lazy_config_conventions(cfg: Any) -> None:
    """A LazyConfig's input conventions (the training mapper's image format, the model's
    pixel statistics, every ``stride_in_1x1`` of its stages) are those of the weights in
    ``train.init_checkpoint``."""
    what = f"train.init_checkpoint={cfg.train.init_checkpoint!r}"
    conventions = resolve_weights(cfg.train.init_checkpoint, what).conventions
    if conventions is None:
        return
    keys = [
        ("format", "dataloader.train.mapper.image_format"),
        ("pixel_mean", "model.pixel_mean"),
        ("pixel_std", "model.pixel_std"),
    ]
    given = [
        (field, key, OmegaConf.select(cfg, key))
        for field, key in keys
        if OmegaConf.select(cfg, key) is not None
    ]
    strides = _keys_named(cfg.model, "stride_in_1x1", "model")
    given += [("stride_in_1x1", key, value) for key, value in strides]
    check_conventions(conventions, given, what)
