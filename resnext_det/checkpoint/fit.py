"""Does a weight file fit a model? Checked before a run, not discovered after it.

Detectron2 loads what matches and logs the rest: a file of another depth or template,
or a truncated one, starts a run from partly random weights, and only the log says so.
:func:`check_weights_fit` instead reads the file as Detectron2 will (its name matching
included) and fails, naming the tensors, when the weights do not cover what they must.
"""

import logging
from collections.abc import Callable
from typing import Optional

from detectron2.checkpoint.c2_model_loading import align_and_update_state_dicts
from torch import nn

from ..modeling import FEATURE_NAMES
from ..utils.errors import ConfigError, WeightsError
from .checkpointer import SafeDetectionCheckpointer, read_checkpoint

__all__ = ["check_weights_fit", "pretrained_scope", "starting_weights"]

# Buffers Detectron2 builds from the config, not from weights.
_CONFIG_BUFFERS = ("pixel_mean", "pixel_std", "cell_anchors")


def pretrained_scope(key: str) -> bool:
    """The tensors ImageNet weights must provide: the ResNeXt trunk and the C4 head's res5."""
    return key.startswith(("backbone.bottom_up.", "roi_heads.res5.")) or (
        key.startswith("backbone.") and key.split(".")[1] in FEATURE_NAMES
    )


def _longest_suffix_match(key: str, names) -> Optional[str]:
    """The longest of ``names`` that is ``key`` or a dotted suffix of it (Detectron2's rule)."""
    matches = [name for name in names if key == name or key.endswith("." + name)]
    return max(matches, key=len) if matches else None


def check_weights_fit(
    model: nn.Module,
    path: str,
    scope: Optional[Callable[[str], bool]] = None,
    what: str = "MODEL.WEIGHTS",
) -> int:
    """Raise unless the file at ``path`` provides every tensor of ``model`` in ``scope``.

    Args:
        model: the model the weights will be loaded into.
        path: the weight file, a published name or a URL (resolved as the checkpointer
            resolves it; read safely: no code in it runs).
        scope: which of the model's tensor names must be provided (default: all of them
            but the buffers Detectron2 builds from the config).
        what: how the file is named in the error (the config key, or "the last checkpoint").

    Returns:
        How many of the model's tensors the file provides.

    Raises:
        WeightsError: the file cannot be had or read (a failed download, missing, not a
            weight file, corrupt, holding code), holds non-finite values, or leaves tensors
            in scope unprovided or of another shape (the first few are named, with both
            shapes).
    """
    # Read as the run will read it (resolved, downloaded, converted); a failed download,
    # a missing, corrupt, crafted or non-finite file ends here in one line.
    checkpoint = read_checkpoint(path, label=f"{what}={path!r}", model=model)
    weights = checkpoint.get("model", checkpoint)
    if not isinstance(weights, dict):
        raise WeightsError(f"{what}={path!r} holds no state dict; expected a weight file")
    model_state = model.state_dict()
    given = weights
    if checkpoint.get("matching_heuristics", False):
        SafeDetectionCheckpointer(model)._convert_ndarray_to_tensor(weights)
        matcher = logging.getLogger("detectron2.checkpoint.c2_model_loading")
        level, matcher.level = matcher.level, logging.ERROR  # its table is for the real load
        try:
            weights = align_and_update_state_dicts(
                model_state, weights, c2_conversion=checkpoint.get("__author__") == "Caffe2"
            )
        finally:
            matcher.setLevel(level)
    scope = scope or (lambda key: not key.endswith(_CONFIG_BUFFERS))
    wanted = [key for key in model_state if scope(key) and not key.endswith(_CONFIG_BUFFERS)]
    missing, wrong = [], []
    for key in wanted:
        # Detectron2's matching drops a same-named tensor of another shape: find it again.
        value = weights.get(key)
        if value is None:
            value = given.get(_longest_suffix_match(key, given), None)
        if value is None:
            missing.append(key)
        elif tuple(value.shape) != tuple(model_state[key].shape):
            wrong.append(f"{key} {tuple(value.shape)} vs {tuple(model_state[key].shape)}")
    if missing or wrong:
        raise WeightsError(
            f"{what}={path!r} does not fit the model: of the {len(wanted)} tensors it must "
            f"provide, {len(wrong)} have another shape (e.g. {wrong[:2]}) and {len(missing)} "
            f"are missing (e.g. {missing[:3]}); expected weights of the configured network "
            "(depth, template, widths)"
        )
    return len(wanted)


def starting_weights(
    model: nn.Module,
    output_dir: Optional[str],
    weights: str,
    *,
    resume: bool = False,
    whole_model: bool = False,
    trunk: Callable[[str], bool] = pretrained_scope,
    key: str = "MODEL.WEIGHTS",
    use: str = "--eval-only would evaluate",
) -> Optional[str]:
    """The file a run starts from, checked to fit ``model`` before anything is loaded.

    Every tool decides its start so, up front and again where it loads: the last
    checkpoint of ``output_dir`` (with ``resume``, where there is one), which must fit
    entirely; else ``weights`` (a file or a name), which must provide the ``trunk`` (for
    training: an ImageNet file has no heads) or, with ``whole_model``, everything.

    Args:
        model: the model to start.
        output_dir: where a run keeps its checkpoints (None: no resume).
        weights: the initial weights (``MODEL.WEIGHTS``, ``train.init_checkpoint``).
        resume: continue from the last checkpoint of ``output_dir`` if there is one.
        whole_model: the weights must provide every tensor (to evaluate or predict).
        trunk: the tensors initial weights must provide for training.
        key: how errors name ``weights``.
        use: what would run on random weights, for the error (``"the detector would
            predict with"``).

    Returns:
        The file to load, or None to start from the initialization.

    Raises:
        WeightsError: the file does not fit, or cannot be read safely.
        ConfigError: ``whole_model`` without weights (it would use random ones).
    """
    if resume and output_dir:
        last = SafeDetectionCheckpointer(model, output_dir, save_to_disk=False)
        if last.has_checkpoint():
            path = last.get_checkpoint_file()
            check_weights_fit(model, path, what="the last checkpoint")
            return path
    if weights:
        check_weights_fit(model, weights, scope=None if whole_model else trunk, what=key)
        return weights
    if whole_model:
        raise ConfigError(
            f"{key} is empty, so {use} random weights; expected {key} path/to/model_final.pth"
        )
    return None
