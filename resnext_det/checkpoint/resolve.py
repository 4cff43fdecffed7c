"""What ``MODEL.WEIGHTS`` names, as a local file in Detectron2's form, with its conventions.

``MODEL.WEIGHTS`` (``train.init_checkpoint``, the tools' weight arguments) may be:

- a local file, read as before;
- a published name (:mod:`.catalog`), e.g. ``ResNeXt50_32X4D_Weights.IMAGENET1K_V1``;
- ``detectron2://...`` (Detectron2's own files and cache) or ``https://...``.

Names and URLs are downloaded into the usual caches and checked (:mod:`.download`). A file
in another code base's format (a torchvision or timm state dict, ``.safetensors``
included, or this project's pretraining checkpoint) is converted by the converter, its
features checked against the source model's (:mod:`.verify`), and the result cached in
``torch.hub.get_dir()/resnext_det/converted``, named by the source's sha256, so that every
later load (each process of a run, the next run) reads it as it is. Detectron2's own
formats (its ``.pkl`` files, its checkpoints, files the converter wrote) are read as they
are, by Detectron2's checkpointer, as Detectron2 would read them.
"""

import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlparse

import torch
from detectron2.utils.file_io import Detectron2Handler
from iopath.common.file_io import file_lock

from ..utils.errors import WeightsError
from .catalog import (
    DETECTRON2_PREFIX,
    PublishedWeights,
    find_published,
    is_published_name,
    published_weights,
)
from .convert import convert, write_detectron2_weights
from .download import fetch, sha256_of
from .rename import InputConventions
from .safe_load import (
    CONVERTED_AUTHOR,
    check_finite_weights,
    guess_source,
    load_weight_file,
    require_local_file,
    state_dict_of,
)
from .verify import compare_features

__all__ = ["ResolvedWeights", "converted_cache_dir", "fetch_weights", "resolve_weights"]


@dataclass(frozen=True)
class ResolvedWeights:
    """A weight name, resolved.

    Attributes:
        path: a local file that Detectron2's checkpointer reads as it is, with the query of
            the name (``?matching_heuristics=True``), if it had one.
        conventions: the input conventions of its weights, where known: those of the
            published weights it names, or those a converted file records.
        published: the published weights it names, if it names some.
    """

    path: str
    conventions: Optional[InputConventions]
    published: Optional[PublishedWeights]


def converted_cache_dir() -> Path:
    """Where converted weights are cached: beside torch hub's (``$TORCH_HOME`` moves it)."""
    return Path(torch.hub.get_dir()) / "resnext_det" / "converted"


def _url_of(name: str, label: str) -> Optional[str]:
    """The https URL that ``name`` means, or None if it means a local file."""
    published = find_published(name) if "://" in name or is_published_name(name) else None
    if published is not None:
        return published.url
    if name.startswith(DETECTRON2_PREFIX):
        return Detectron2Handler.S3_DETECTRON2_PREFIX + name[len(DETECTRON2_PREFIX) :]
    if name.startswith("https://"):
        return name
    if "://" in name:
        raise WeightsError(
            f"{label} is a URL; expected a local weight file or a name to download over https: "
            "a published name, detectron2://... or https://... (plain http:// and other "
            "schemes are not downloaded)"
        )
    if is_published_name(name) and not Path(name).exists():
        names = ", ".join(w.name for w in published_weights() if "://" not in w.name)
        raise WeightsError(
            f"{label} is not a published weight name; expected one of {names}, a "
            "detectron2:// or https:// URL, or a local file"
        )
    return None


def fetch_weights(name: str, label: Optional[str] = None) -> Path:
    """The local file that ``name`` means, downloaded and checked first if it is a name or
    a URL; not converted (the converter's input)."""
    label = label or name
    url = _url_of(name, label)
    return fetch(url, label) if url else require_local_file(name, label)


def resolve_weights(
    name: str, label: Optional[str] = None, model_keys: Optional[Collection[str]] = None
) -> ResolvedWeights:
    """``name`` as a local file in Detectron2's form: fetched, checked and converted as needed.

    Args:
        name: what ``MODEL.WEIGHTS`` says (a query such as ``?matching_heuristics=True``
            is kept for Detectron2's checkpointer).
        label: how errors name it (default: the name), e.g. ``"MODEL.WEIGHTS='x.pth'"``.
        model_keys: the names of the tensors of the model the weights are for: a file that
            already has some of them is read as it is (our pretraining's classifier loading
            its own checkpoint), not converted for a detector.

    Raises:
        WeightsError: in one line naming it: an unknown name, a URL that is not https, a
            missing file or a folder, a failed download (:func:`~.download.fetch`), or a
            file in another format that does not convert.
    """
    label = label or name
    parsed = urlparse(name)  # Detectron2 accepts "file.pth?matching_heuristics=True"
    bare = parsed._replace(query="").geturl()
    published = find_published(bare) if "://" in bare or is_published_name(bare) else None
    local = fetch_weights(bare, label)
    conventions = published.conventions if published else None
    if local.suffix != ".pkl":  # Detectron2 reads its .pkl files itself
        data = _peek(local, label)
        if data is not None and _needs_conversion(data, model_keys):
            local = _converted(local, label)
            data = _peek(local, label)
        if conventions is None and isinstance(data, Mapping) and "conventions" in data:
            conventions = InputConventions.from_dict(data["conventions"])
    query = f"?{parsed.query}" if parsed.query else ""
    return ResolvedWeights(f"{local}{query}", conventions, published)


def _peek(path: Path, label: str) -> Optional[Mapping[str, Any]]:
    """A file's top-level dict, memory-mapped where torch allows; None if it is none or
    cannot be read: the checkpointer's own reading then names the problem in one line."""
    try:
        with open(path, "rb") as f:
            zipped = f.read(4) == b"PK\x03\x04"
        if zipped:  # keys without reading the tensors: a large checkpoint costs nothing
            data = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        else:
            data = load_weight_file(str(path), label)
    except Exception:  # noqa: BLE001 (the real reading reports it)
        return None
    return data if isinstance(data, Mapping) else None


def _needs_conversion(data: Mapping[str, Any], model_keys: Optional[Collection[str]]) -> bool:
    """Whether a file is in a format Detectron2 cannot load as it is into the model."""
    if data.get("__author__") == CONVERTED_AUTHOR:
        return False
    # A state dict in torchvision's names (timm's too), or our pretraining's checkpoint.
    if guess_source(data) != "torchvision" and "resnext_det" not in data:
        return False
    keys = {key.removeprefix("module.") for key in state_dict_of(data)}
    return not (model_keys is not None and keys & set(model_keys))


def _converted(source: Path, label: str) -> Path:
    """The converted copy of ``source`` in the cache, converted and checked first if absent."""
    digest = sha256_of(source)
    target = converted_cache_dir() / f"{source.stem}-{digest[:16]}.pth"
    with file_lock(str(target)):
        if target.is_file():
            return target
        data = load_weight_file(str(source), label)
        check_finite_weights(state_dict_of(data), label)
        try:
            conversion = convert(data)
        except WeightsError as e:
            raise WeightsError(f"{label} ({source}) does not convert: {e}") from None
        comparison = compare_features(conversion, data)
        if not comparison.exact:
            raise WeightsError(
                f"{label}: the weights converted from {source} do not compute the source "
                f"model's features ({comparison.summary()}); expected a standard "
                f"{conversion.source} ResNet/ResNeXt (convert it with tools/convert_weights.py "
                "to see what differs)"
            )
        write_detectron2_weights(conversion, str(target), overwrite=True)
    sys.stderr.write(
        f"converted {source} ({conversion.source}: {conversion.spec}) into {target}; "
        f"{comparison.summary()}\n"
    )
    return target
