"""Exact conversion of ResNeXt weights from other code bases into Detectron2 form.

Sources: this project's pretraining checkpoints, torchvision and timm ResNet/ResNeXt state
dicts, and Detectron2's model-zoo ImageNet ``.pkl`` files (Caffe2 names). The pipeline:
read the file (:func:`~.safe_load.read_weight_file`), rename it into Detectron2's names
(:mod:`.rename`), refuse weights that do not fit the network they describe, and write
them with a config snippet of their input conventions. The result loads into
``build_resnext_backbone`` (stem..res4), the C4 head (res5 as ``roi_heads.res5``) and the
FPN backbone (``backbone.bottom_up``), by Detectron2's usual suffix matching of ImageNet
weights; :func:`~.verify.compare_features` checks that it computes the source's features.
"""

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from ..modeling import ResNeXtSpec, build_resnext
from ..modeling.resnext import CONFIG_KEYS
from ..utils.atomic_io import (
    check_output_dir,
    make_output_dir,
    write_atomically,
    write_text_atomically,
)
from ..utils.errors import OutputError, WeightsError
from .rename import (
    CLASSIFIER,
    INFERRED_FIELDS,
    SOURCES,
    InputConventions,
    StateDict,
    drop_classifier,
    infer_spec,
    to_detectron2_names,
)
from .safe_load import CONVERTED_AUTHOR, guess_source, is_converted_weights

__all__ = [
    "Conversion",
    "check_outputs",
    "config_snippet",
    "convert",
    "write_detectron2_weights",
]


@dataclass
class Conversion:
    """Weights in Detectron2 names, the network they describe, and their conventions.

    Attributes:
        weights: ``stem.*`` and ``res2.*`` ... ``res5.*`` (and ``linear.*`` if kept).
        spec: the ResNeXt the weights describe (norm: FrozenBN, for detection).
        conventions: their input conventions.
        source: the source format.
        unmatched: source keys that were not converted (reported, never silently lost).
    """

    weights: StateDict
    spec: ResNeXtSpec
    conventions: InputConventions
    source: str
    unmatched: list[str] = field(default_factory=list)


def convert(
    data: Mapping[str, Any],
    source: str = "auto",
    caffe2_style: Optional[str] = None,
    keep_classifier: bool = False,
) -> Conversion:
    """Convert a weight file's content (see :func:`~.safe_load.read_weight_file`) to
    Detectron2 names.

    Args:
        data: the file's top-level dict.
        source: one of :data:`SOURCES`; 'auto' guesses from the keys.
        caffe2_style: 'msra' or 'fair' for Caffe2 files (default: MSRA for ResNets,
            FAIR for ResNeXts, as Detectron2's model zoo has them).
        keep_classifier: keep the fc layer as ``linear.*`` (for our classifier); a
            detector has no use for it.

    Raises:
        ValueError: the format is unknown, or the weights describe no ResNeXt.
    """
    if source not in SOURCES:
        raise WeightsError(f"source={source!r} is not supported; expected one of {SOURCES}")
    if source == "auto":
        source = guess_source(data)
    weights, unmatched, conventions = to_detectron2_names(data, source, caffe2_style)
    spec = infer_spec(weights, conventions.stride_in_1x1)
    conversion = Conversion(weights, spec, conventions, source, unmatched)
    if not keep_classifier:
        conversion.weights = drop_classifier(conversion.weights)
    _check_shapes(conversion)
    return conversion


def _check_shapes(conversion: Conversion) -> None:
    """Refuse weights whose shapes or names differ from the network they describe."""
    model = build_resnext(conversion.spec, out_features=["res5"])
    expected = model.state_dict()
    problems = [
        f"{k}: {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in conversion.weights.items()
        if k in expected and v.shape != expected[k].shape
    ]
    missing = sorted(set(expected) - set(conversion.weights))
    extra = sorted(
        k for k in set(conversion.weights) - set(expected) if not k.startswith(f"{CLASSIFIER}.")
    )
    if problems or missing or extra:
        raise WeightsError(
            f"the weights do not fit {conversion.spec}: shape mismatches {problems[:3]}, "
            f"missing {missing[:3]}, unexpected {extra[:3]}; expected exactly its parameters"
        )


# -- writing ----------------------------------------------------------------------------

SNIPPET_HEADER = "# Input conventions of "
# The snippet sets the spec's inferred fields; its override line, the first four.
OVERRIDE_FIELDS = INFERRED_FIELDS[:4]


def _snippet_of(output: Path) -> Path:
    return output.with_suffix(".yaml")


def _is_our_snippet(snippet: Path, output: Path) -> bool:
    """Whether ``snippet`` is the config snippet a conversion to ``output`` wrote."""
    try:
        text = snippet.read_text(errors="replace")
    except OSError:
        return False
    return text.startswith(SNIPPET_HEADER) and f'WEIGHTS: "{output.resolve()}"' in text


def _same_file(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))


def check_outputs(
    output: str, source: Optional[str] = None, overwrite: bool = False
) -> tuple[Path, Path]:
    """Where a conversion will write: the weights and, beside them, their config snippet.

    The rule: the source is never written; the weights never share their snippet's path
    (an output named ``*.yaml``); and an existing file is replaced only if an earlier
    conversion wrote it (weights saved by this module, or the snippet of a conversion to
    the same output), or with ``overwrite``.

    Raises:
        OutputError: a path breaks the rule, or the output's folder cannot be written.
    """
    out = Path(output)
    snippet = _snippet_of(out)
    if out.is_dir():
        raise OutputError(f"output={output!r} is a folder; expected a weight file name in it")
    if snippet == out:
        raise OutputError(
            f"output={output!r} would be overwritten by its own config snippet ({snippet.name}); "
            f"expected a weight file name such as {out.with_suffix('.pth').name}"
        )
    if source is not None:
        for path, role in ((out, "output"), (snippet, "its config snippet")):
            if _same_file(path, Path(source)):
                raise OutputError(
                    f"output={output!r}: {role} {path} is the source file; expected another "
                    "output name (the source is never overwritten)"
                )
    if not overwrite:
        if out.exists() and not is_converted_weights(out):
            raise OutputError(
                f"output={output!r} exists and was not written by this tool; expected a new "
                "file name, or --overwrite to replace it"
            )
        if snippet.exists() and not _is_our_snippet(snippet, out):
            raise OutputError(
                f"{snippet} exists and is not the config snippet of a conversion to {out.name}; "
                "expected another output name (the snippet is <output name>.yaml), or "
                "--overwrite to replace it"
            )
    check_output_dir(out.parent, "the output's folder")
    return out, snippet


def write_detectron2_weights(
    conversion: Conversion, path: str, overwrite: bool = False
) -> tuple[Path, Path]:
    """Write the weights as a Detectron2 checkpoint and, beside it, a config snippet.

    The checkpoint is ``{"model": weights, "__author__": "resnext_det",
    "matching_heuristics": True}``: Detectron2 matches ImageNet weights by name suffix, so
    ``res5.*`` lands in the C4 head's ``roi_heads.res5`` or FPN's ``bottom_up.res5``.
    Existing files are replaced only as :func:`check_outputs` allows.

    Returns:
        The checkpoint's path and the snippet's (``<name>.yaml``).
    """
    out, snippet = check_outputs(path, overwrite=overwrite)
    make_output_dir(out.parent, "the output's folder")
    data = {
        "model": {k: v.contiguous() for k, v in conversion.weights.items()},
        "__author__": CONVERTED_AUTHOR,
        "matching_heuristics": True,
        "conventions": asdict(conversion.conventions),
    }
    write_atomically(out, lambda f: torch.save(data, f))
    write_text_atomically(snippet, config_snippet(conversion, out))
    return out, snippet


def config_snippet(conversion: Conversion, weights_path: Path) -> str:
    """The Detectron2 config keys the weights need, as yaml with the overrides in a comment."""
    spec, conv = conversion.spec, conversion.conventions
    mean, std = list(conv.pixel_mean), list(conv.pixel_std)
    overrides = " ".join(
        [
            f"MODEL.WEIGHTS {weights_path.resolve()} INPUT.FORMAT {conv.format}",
            f"MODEL.PIXEL_MEAN '{mean}' MODEL.PIXEL_STD '{std}'",
        ]
        + [f"{CONFIG_KEYS[name]} {getattr(spec, name)}" for name in OVERRIDE_FIELDS]
    )
    resnets = "".join(  # all of them Detectron2's own MODEL.RESNETS keys
        f"    {CONFIG_KEYS[name].removeprefix('MODEL.RESNETS.')}: {getattr(spec, name)}\n"
        for name in INFERRED_FIELDS
    )
    return (
        f"{SNIPPET_HEADER}{weights_path.name}: {spec}, converted from {conversion.source}\n"
        "# weights by tools/convert_weights.py. Merge these keys into a detection config,\n"
        "# or give them to tools/train_net.py as trailing overrides:\n"
        f"#   {overrides}\n"
        "MODEL:\n"
        f'  WEIGHTS: "{weights_path.resolve()}"\n'
        f"  PIXEL_MEAN: {mean}\n"
        f"  PIXEL_STD: {std}\n"
        "  RESNETS:\n"
        f"{resnets}"
        "INPUT:\n"
        f'  FORMAT: "{conv.format}"\n'
    )
