"""Map weights between the block forms (a), (b) and (c) of the paper's Fig. 3.

The forms are one function written three ways, so their weights are one set of numbers
arranged three ways:

- path i's first 1x1 and its norm are rows ``[i*d, (i+1)*d)`` of (c)'s ``conv1``;
- path i's 3x3 is group i of (c)'s grouped ``conv2`` (the same rows);
- in (b) the last 1x1 is (c)'s ``conv3`` unchanged; in (a) path i's last 1x1 is
  columns ``[i*d, (i+1)*d)`` of it, and ``aggregation_norm`` is ``conv3.norm``.

The functions work on whole state dicts (a backbone, a detector, a classifier): every
block is found by its keys and everything else passes through untouched.
"""

import re

import torch

from ..utils.errors import ConfigError, WeightsError

__all__ = ["BLOCK_FORMS", "convert_block_form", "to_grouped_form", "from_grouped_form"]

BLOCK_FORMS = ("a", "b", "c")
StateDict = dict[str, torch.Tensor]

_PATH_KEY = re.compile(r"^(?P<block>.+)\.paths\.(?P<index>\d+)\.(?P<rest>.+)$")


def _check_form(form: str, argument: str) -> None:
    if form not in BLOCK_FORMS:
        raise ConfigError(f"{argument}={form!r} is not a block form; expected one of 'a', 'b', 'c'")


def _split(tensor: torch.Tensor, chunks: int, dim: int) -> list[torch.Tensor]:
    # 0-d tensors (BatchNorm's num_batches_tracked) belong to every path alike.
    if tensor.dim() == 0:
        return [tensor.clone() for _ in range(chunks)]
    return [t.clone() for t in tensor.chunk(chunks, dim=dim)]


def _join(tensors: list[torch.Tensor], dim: int) -> torch.Tensor:
    if tensors[0].dim() == 0:
        return tensors[0].clone()
    return torch.cat(tensors, dim=dim)


def _grouped_blocks(state_dict: StateDict) -> list[str]:
    """Prefixes of the form-(c) bottleneck blocks in a state dict."""
    return [
        key[: -len(".conv2.weight")]
        for key in state_dict
        if key.endswith(".conv2.weight")
        and key.replace(".conv2.", ".conv1.") in state_dict
        and key.replace(".conv2.", ".conv3.") in state_dict
    ]


def to_grouped_form(state_dict: StateDict) -> StateDict:
    """Weights of form (a) or (b) blocks, rearranged for form (c). Other keys pass through.

    Args:
        state_dict: a state dict holding blocks of form (a) and/or (b).

    Returns:
        A new state dict in form (c).
    """
    paths: dict[str, dict[str, dict[int, torch.Tensor]]] = {}
    out: StateDict = {}
    for key, value in state_dict.items():
        match = _PATH_KEY.match(key)
        if match is None:
            out[key] = value.clone()
        else:
            by_index = paths.setdefault(match["block"], {}).setdefault(match["rest"], {})
            by_index[int(match["index"])] = value

    for block, parts in paths.items():
        for rest, by_index in parts.items():
            if sorted(by_index) != list(range(len(by_index))):
                raise WeightsError(
                    f"{block}.paths.*.{rest}: paths {sorted(by_index)} are not numbered 0..C-1"
                )
            # Path i's last 1x1 (form a) holds columns of conv3; everything else rows.
            dim = 1 if rest == "conv3.weight" else 0
            out[f"{block}.{rest}"] = _join([by_index[i] for i in range(len(by_index))], dim)
        for key in [k for k in out if k.startswith(f"{block}.aggregation_norm.")]:
            out[key.replace(".aggregation_norm.", ".conv3.norm.")] = out.pop(key)
    return out


def from_grouped_form(state_dict: StateDict, form: str) -> StateDict:
    """Weights of form (c) blocks, rearranged for form ``form`` ('a', 'b' or 'c').

    The cardinality of each block is read off its grouped conv2 weight
    (shape ``[C*d, d, 3, 3]``).

    Args:
        state_dict: a state dict holding blocks of form (c).
        form: the target form.

    Returns:
        A new state dict in the target form.
    """
    _check_form(form, "form")
    out = {key: value.clone() for key, value in state_dict.items()}
    if form == "c":
        return out
    for block in _grouped_blocks(state_dict):
        conv2 = state_dict[f"{block}.conv2.weight"]
        cardinality = conv2.shape[0] // conv2.shape[1]
        for key in [k for k in state_dict if k.startswith(f"{block}.")]:
            rest = key[len(block) + 1 :]
            if rest.startswith(("conv1.", "conv2.")):
                pieces, target = _split(out.pop(key), cardinality, dim=0), rest
            elif rest == "conv3.weight" and form == "a":
                pieces, target = _split(out.pop(key), cardinality, dim=1), rest
            else:
                if rest.startswith("conv3.norm.") and form == "a":
                    out[f"{block}.aggregation_norm.{rest[len('conv3.norm.') :]}"] = out.pop(key)
                continue
            for index, piece in enumerate(pieces):
                out[f"{block}.paths.{index}.{target}"] = piece
    return out


def convert_block_form(state_dict: StateDict, *, source: str, target: str) -> StateDict:
    """Rearrange a state dict's block weights from one form to another.

    Args:
        state_dict: weights of a model whose blocks are in form ``source``.
        source: 'a', 'b' or 'c'.
        target: 'a', 'b' or 'c'.

    Returns:
        A new state dict that loads strictly into the same model built with ``target``.
    """
    _check_form(source, "source")
    _check_form(target, "target")
    grouped = to_grouped_form(state_dict) if source != "c" else state_dict
    return from_grouped_form(grouped, target)
