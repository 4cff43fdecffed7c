"""Weights by name: fetched from a real HTTP server on 127.0.0.1 through the mirror setting,
checked, converted exactly and cached; the conventions they need; the names the shipped
configs give. Nothing here leaves 127.0.0.1, and no test touches the user's caches."""

import dataclasses
import hashlib
import io
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import detectron2
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig, get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.backbone.resnet import build_resnet_backbone
from omegaconf import DictConfig, ListConfig
from safetensors.torch import save as safetensors_bytes
from torchvision.models import get_model_weights, get_weight
from torchvision.models.resnet import Bottleneck, ResNet

from resnext_det.checkpoint import (
    SafeDetectionCheckpointer,
    find_published,
    published_weights,
    resolve_weights,
)
from resnext_det.checkpoint.conventions import (
    check_config_conventions,
    check_conventions,
    check_lazy_config_conventions,
)
from resnext_det.checkpoint.download import MIRROR_ENV, TIMEOUT_ENV, cache_path, fetch
from resnext_det.checkpoint.fit import check_weights_fit
from resnext_det.checkpoint.rename import IMAGENET_RGB
from resnext_det.modeling import ResNeXtSpec, build_resnext_classifier
from resnext_det.modeling.backbone import build_resnext_backbone
from resnext_det.reproduction.engine import build_config
from resnext_det.reproduction.engine.trainer import check_can_train
from resnext_det.reproduction.pretrain import Pretrainer, build_pretrain_config
from resnext_det.utils.errors import ConfigError, WeightsError

from ._paths import CONFIGS, DEMO_CONFIG, REPO
from ._photos import make_image_folder
from ._tools import assert_one_line_error, run_cli
from ._weights_server import WeightsServer
from .test_convert_weights import TINY_PRETRAIN, _caffe2_blobs, _randomize_norms

TORCHVISION = "https://download.pytorch.org/models/"
MSRA_R50 = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
MSRA_R50_URL = "https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl"
TIMM_URL = "https://huggingface.co/timm/resnext14_32x4d.test/resolve/main/model.safetensors"
# Conversions are exact up to float32 sums in another order (and frozen BN folded).
EXACT = 1e-5
STAGES = ("res2", "res3", "res4", "res5")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hashed_url(stem: str, data: bytes) -> str:
    """A torchvision-form URL whose name carries the data's own sha256 prefix."""
    return f"{TORCHVISION}{stem}-{_sha256(data)[:8]}.pth"


def _torch_bytes(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """torch hub's and iopath's caches in tmp_path, never the user's."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "iopath"))
    return tmp_path


@pytest.fixture
def server(caches, monkeypatch):
    """A server on 127.0.0.1, reached through the mirror setting."""
    with WeightsServer() as server:
        monkeypatch.setenv(MIRROR_ENV, server.base)
        yield server


@pytest.fixture(scope="module")
def torchvision_x14():
    """torchvision's ResNeXt with one block per stage (depth 14, 32x4d), real norms."""
    model = ResNet(Bottleneck, [1, 1, 1, 1], groups=32, width_per_group=4, num_classes=10)
    model = _randomize_norms(model).eval()
    data = _torch_bytes(model.state_dict())
    return model, data, _hashed_url("resnext14_32x4d", data)


@pytest.fixture(scope="module")
def timm_x14():
    """timm's ResNeXt-14 32x4d as a .safetensors file (timm's format on the hub)."""
    from timm.models.resnet import Bottleneck as TimmBottleneck
    from timm.models.resnet import ResNet as TimmResNet

    model = TimmResNet(TimmBottleneck, [1, 1, 1, 1], cardinality=32, base_width=4, num_classes=10)
    model = _randomize_norms(model).eval()
    return model, safetensors_bytes(model.state_dict()), TIMM_URL


@pytest.fixture(scope="module")
def msra_r50_res4():
    """Detectron2's MSRA R-50.pkl layout (Caffe2 names, stride in the 1x1), stem..res4."""
    blobs = _caffe2_blobs(50, 1, 64, stride_in_1x1=True)
    blobs = {k: v for k, v in blobs.items() if not k.startswith(("res5_", "fc1000_"))}
    return pickle.dumps(blobs)


def _stages(net, x):
    """res2..res5 of a torchvision or timm ResNet (the source model, by its own code)."""
    activation = net.act1 if hasattr(net, "act1") else net.relu
    x = net.maxpool(activation(net.bn1(net.conv1(x))))
    out = {}
    for index, stage in enumerate(STAGES):
        x = getattr(net, f"layer{index + 1}")(x)
        out[stage] = x
    return out


def _kept(folder: Path) -> list[str]:
    """What a download left in a cache folder, but for its lock (iopath's, left as iopath
    leaves it)."""
    return [p.name for p in folder.iterdir() if not p.name.endswith(".lock")]


def _relative(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


def _x14_fpn_detector():
    cfg = build_config(
        str(CONFIGS / "faster_rcnn_X50_32x4d_FPN.yaml"),
        ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", "14"],
    )
    return build_model(cfg).eval()


# -- the table ------------------------------------------------------------------------------


def test_published_names_are_torchvisions_and_detectron2s_own():
    names = {w.name for w in published_weights()}
    assert {"ResNeXt50_32X4D_Weights.IMAGENET1K_V1", MSRA_R50} <= names
    x50 = find_published("ResNeXt50_32X4D_Weights.IMAGENET1K_V1")
    assert x50.url == get_weight("ResNeXt50_32X4D_Weights.IMAGENET1K_V1").url
    assert x50.network == (50, 32, 4) and x50.top1 is not None
    assert find_published("ResNeXt50_32X4D_Weights.DEFAULT").name.endswith("IMAGENET1K_V2")
    assert find_published(MSRA_R50_URL).name == MSRA_R50
    # The converter's conventions for torchvision files are torchvision's published ones.
    for weights in published_weights():
        if weights.source == "torchvision":
            family = get_model_weights(weights.name.split(".")[0].replace("_Weights", ""))
            transforms = family[weights.name.split(".")[1]].transforms()
            assert [round(255 * m, 3) for m in transforms.mean] == list(IMAGENET_RGB.pixel_mean)
            assert [round(255 * s, 3) for s in transforms.std] == list(IMAGENET_RGB.pixel_std)
    msra = find_published(MSRA_R50).conventions
    assert (msra.format, msra.pixel_std, msra.stride_in_1x1) == ("BGR", (1.0, 1.0, 1.0), True)
    fair = find_published("detectron2://ImageNetPretrained/FAIR/X-101-32x8d.pkl").conventions
    assert (fair.format, fair.pixel_std[0], fair.stride_in_1x1) == ("BGR", 57.375, False)


def test_an_unknown_name_or_scheme_is_refused_in_one_line(caches):
    with pytest.raises(WeightsError, match=r"is not a published weight name; expected one of Res"):
        resolve_weights("ResNeXt50_32X4D_Weights.IMAGENET1K_V9")
    with pytest.raises(
        WeightsError,
        match=r"is a URL; expected .*\(plain http:// and other schemes are not downloaded\)",
    ):
        resolve_weights("s3://bucket/x.pth")


# -- downloads ------------------------------------------------------------------------------


def test_download_into_the_usual_caches_then_reuse_with_the_network_gone(server, caches, capsys):
    data = bytes(range(256)) * 1200
    url = _hashed_url("tiny", data)
    server.put(url, data)
    server.put(MSRA_R50_URL, data)
    path = fetch(url)
    assert path == caches / "torch" / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    assert path.read_bytes() == data
    record = path.with_name(path.name + ".sha256").read_text()
    assert record == f"{_sha256(data)}  {path.name}\n"  # as sha256sum writes it
    assert f"sha256 {_sha256(data)}" in capsys.readouterr().err  # printed
    # detectron2:// goes where Detectron2's own handler (iopath) caches it.
    assert resolve_weights(MSRA_R50).path == str(
        caches / "iopath" / "detectron2" / "ImageNetPretrained" / "MSRA" / "R-50.pkl"
    )
    asked = len(server.requests)
    server.stop()
    assert fetch(url) == path and fetch(MSRA_R50_URL).read_bytes() == data
    assert len(server.requests) == asked


def test_a_file_already_in_the_users_cache_is_used_as_it_is(server, caches, capsys):
    data = b"\x80" + bytes(1000)
    by_hand = cache_path(MSRA_R50_URL)  # as Detectron2 left it, or as put there by hand
    by_hand.parent.mkdir(parents=True)
    by_hand.write_bytes(data)
    assert by_hand == caches / "iopath" / "detectron2" / "ImageNetPretrained/MSRA/R-50.pkl"
    assert fetch(MSRA_R50_URL) == by_hand and server.requests == []
    assert f"recorded the sha256 of {by_hand}: sha256 {_sha256(data)}" in capsys.readouterr().err


def test_a_mirror_may_be_a_folder(caches, monkeypatch, tmp_path):
    data = bytes(range(256)) * 300
    url = _hashed_url("folder", data)
    copy = tmp_path / "mirror" / WeightsServer.path_of(url).lstrip("/")
    copy.parent.mkdir(parents=True)
    copy.write_bytes(data)
    monkeypatch.setenv(MIRROR_ENV, (tmp_path / "mirror").as_uri())  # file:///...
    assert fetch(url).read_bytes() == data


@pytest.mark.parametrize(
    "faults,second",
    [
        (("cut_once",), "resumed"),
        (("cut_once", "no_range"), "whole again"),
        (("cut_once", "wrong_range"), "refused, then whole again"),
    ],
)
def test_a_cut_connection_resumes_or_downloads_again(server, faults, second):
    data = bytes(range(256)) * 2000
    url = _hashed_url("cut", data)
    server.put(url, data, *faults)
    assert fetch(url).read_bytes() == data
    requests = [None, f"bytes={len(data) // 2}-"]
    assert server.requests_for(url) == requests + ([None] if "wrong_range" in faults else [])


def test_a_stale_partial_file_longer_than_the_file_is_downloaded_again(server):
    data = bytes(range(256)) * 200
    url = _hashed_url("stale", data)
    server.put(url, data)
    cached = cache_path(url)
    cached.parent.mkdir(parents=True)
    cached.with_name(cached.name + ".partial").write_bytes(bytes(len(data) + 10))
    assert fetch(url).read_bytes() == data
    assert server.requests_for(url) == [f"bytes={len(data) + 10}-", None]  # 416, then whole


def test_a_connection_cut_every_time_ends_in_one_line_and_a_later_run_resumes(server):
    data = bytes(range(256)) * 2000
    url = _hashed_url("flaky", data)
    server.put(url, data, "cut_always")
    cached = cache_path(url)
    with pytest.raises(WeightsError, match=r"was cut 4 times.*run again to resume") as cut:
        fetch(url)
    assert url.split("://")[1] in str(cut.value) and str(cached) in str(cut.value)
    partial = cached.with_name(cached.name + ".partial")
    assert not cached.exists() and 0 < partial.stat().st_size < len(data)
    kept = partial.stat().st_size
    server.put(url, data)  # the connection holds now
    assert fetch(url).read_bytes() == data
    assert server.requests_for(url)[-1] == f"bytes={kept}-" and not partial.exists()


@pytest.mark.parametrize("served", ["other content", "truncated"])
def test_a_file_that_is_not_the_published_one_is_refused_by_its_name(server, served):
    data = bytes(range(256)) * 400
    if served == "other content":  # under torchvision's real name: its prefix says no
        url, body = f"{TORCHVISION}resnext50_32x4d-7cdf4587.pth", data
    else:  # the file cut short, whole as far as HTTP can tell
        url, body = _hashed_url("short", data), data[: len(data) // 2]
    server.put(url, body)
    cached = cache_path(url)
    with pytest.raises(WeightsError, match=r"its name says it begins with [0-9a-f]{8}") as refused:
        fetch(url)
    assert str(cached) in str(refused.value) and f"sha256 {_sha256(body)}" in str(refused.value)
    assert _kept(cached.parent) == []  # nothing, not even a partial file


def test_the_hash_recorded_at_the_first_download_guards_the_cache_and_later_downloads(server):
    data = b"\x80" + bytes(range(256)) * 100
    server.put(MSRA_R50_URL, data)
    cached = fetch(MSRA_R50_URL)
    cached.write_bytes(data[:-1] + b"\x00")  # changed on disk
    with pytest.raises(WeightsError, match=r"the cached .*R-50\.pkl has sha256 .* changed on disk"):
        fetch(MSRA_R50_URL)
    cached.unlink()  # downloaded again: the server now has another file
    server.put(MSRA_R50_URL, data + b"\x00")
    with pytest.raises(WeightsError, match=r"R-50\.pkl\.sha256 recorded [0-9a-f]{64} at its first"):
        fetch(MSRA_R50_URL)
    assert not cached.exists()


@pytest.mark.parametrize("fault", ["html", "html_as_file"])
def test_an_html_page_is_refused(server, fault):
    url = _hashed_url("page", b"weights")
    server.put(url, b"weights", fault)
    with pytest.raises(WeightsError, match=r"answered with an HTML page, not a weight file"):
        fetch(url)
    assert _kept(cache_path(url).parent) == []


@pytest.mark.parametrize("fault", ["hang", "hang_midway"])
def test_a_server_that_hangs_ends_in_one_line(server, monkeypatch, fault):
    monkeypatch.setenv(TIMEOUT_ENV, "0.5")
    data = bytes(range(256)) * 400
    url = _hashed_url("slow", data)
    server.put(url, data, fault)
    with pytest.raises(WeightsError, match=r"sent nothing for 0\.5 s") as hung:
        fetch(url)
    assert str(cache_path(url)) in str(hung.value) and not cache_path(url).exists()
    server.put(url, data)  # what did come is resumed from
    assert fetch(url).read_bytes() == data
    assert server.requests_for(url)[-1] == (None if fault == "hang" else f"bytes={len(data) // 2}-")


def test_redirects_are_followed_only_on_the_same_host(server):
    data = bytes(range(256)) * 40
    here, elsewhere = _hashed_url("moved", data), _hashed_url("away", data + b"x")
    server.put(here, data, "redirect_here")
    server.put(elsewhere, data + b"x", "redirect_elsewhere")
    assert fetch(here).read_bytes() == data
    with pytest.raises(WeightsError, match=r"redirects to http://localhost:\d+/.*another host"):
        fetch(elsewhere)
    assert not cache_path(elsewhere).exists()


@pytest.mark.parametrize("through", ["the mirror", "the publisher"])
def test_without_network_the_line_says_what_to_fetch_by_hand_and_where(
    caches, monkeypatch, through
):
    with WeightsServer() as gone:
        pass  # stopped: its port answers no more, as a host that cannot be reached
    if through == "the mirror":
        monkeypatch.setenv(MIRROR_ENV, gone.base)
        url = f"{TORCHVISION}resnext50_32x4d-7cdf4587.pth"
    else:  # no mirror: the publisher itself is out of reach (a host on 127.0.0.1 here)
        monkeypatch.delenv(MIRROR_ENV)
        url = f"https://127.0.0.1:{gone.port}/models/resnext50_32x4d-7cdf4587.pth"
    with pytest.raises(WeightsError, match=r"cannot download") as offline:
        fetch(url, "MODEL.WEIGHTS='ResNeXt50_32X4D_Weights.IMAGENET1K_V1'")
    expected = f"fetch {url} by hand and save it as {cache_path(url)}"
    assert expected in str(offline.value) and MIRROR_ENV in str(offline.value)


@pytest.mark.parametrize(
    "env,value,message",
    [
        (MIRROR_ENV, "proxy:3128", r"RESNEXT_DET_MIRROR='proxy:3128' is not a URL"),
        (TIMEOUT_ENV, "soon", r"RESNEXT_DET_DOWNLOAD_TIMEOUT='soon' is invalid"),
    ],
)
def test_bad_download_settings_are_named(caches, monkeypatch, env, value, message):
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=message):
        fetch(f"{TORCHVISION}resnext50_32x4d-7cdf4587.pth")


# -- conversion on load ---------------------------------------------------------------------


@pytest.mark.parametrize("source", ["torchvision .pth", "timm .safetensors"])
def test_weights_in_another_format_convert_to_exactly_the_source_features(
    server, caches, source, torchvision_x14, timm_x14, capsys
):
    net, data, url = torchvision_x14 if source.startswith("torchvision") else timm_x14
    server.put(url, data)
    detector = _x14_fpn_detector()
    SafeDetectionCheckpointer(detector).load(url)
    assert "converted" in capsys.readouterr().err
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = detector.backbone.bottom_up(x), _stages(net, x)
    for stage in STAGES:
        assert _relative(ours[stage], theirs[stage]) < EXACT, stage
    # Converted once, cached by the source's sha256; read as it is from then on, offline.
    converted = list((caches / "torch" / "hub" / "resnext_det" / "converted").glob("*.pth"))
    assert [p.name.rsplit("-", 1)[1] for p in converted] == [f"{_sha256(data)[:16]}.pth"]
    server.stop()
    resolved = resolve_weights(url)
    assert resolved.path == str(converted[0]) and resolved.conventions == IMAGENET_RGB
    assert "converted" not in capsys.readouterr().err


def test_detectron2_pkl_by_name_loads_as_detectron2_loads_it(server, caches, msra_r50_res4):
    server.put(MSRA_R50_URL, msra_r50_res4)
    cfg = build_config(
        str(CONFIGS / "faster_rcnn_R50.yaml"),
        ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.STRIDE_IN_1X1", "True", "MODEL.WEIGHTS", MSRA_R50],
    )
    ours = build_resnext_backbone(cfg, ShapeSpec(channels=3)).eval()
    SafeDetectionCheckpointer(ours).load(cfg.MODEL.WEIGHTS)
    reference = get_cfg()  # Detectron2's R-50, loaded by Detectron2 from the same cache
    reference.MODEL.RESNETS.STRIDE_IN_1X1 = True
    reference.MODEL.RESNETS.OUT_FEATURES = ["res4"]
    theirs = build_resnet_backbone(reference, ShapeSpec(channels=3)).eval()
    DetectionCheckpointer(theirs).load(str(cache_path(MSRA_R50_URL)))
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert _relative(ours(x)["res4"], theirs(x)["res4"]) < EXACT
    assert resolve_weights(MSRA_R50).conventions == find_published(MSRA_R50).conventions


def test_a_pretraining_checkpoint_converts_for_a_detector_not_for_its_classifier(caches, tmp_path):
    folder = make_image_folder(tmp_path / "imagenet", train=4, val=1, size=72)
    cfg = build_pretrain_config(
        str(CONFIGS / "imagenet" / "X50_32x4d.yaml"),
        [*TINY_PRETRAIN, "DATA.ROOT", str(folder), "OUTPUT_DIR", str(tmp_path / "out")],
    )
    trainer = Pretrainer(cfg)
    _randomize_norms(trainer.model)
    (tmp_path / "out").mkdir()
    trainer.checkpointer.save("model_final", **trainer.checkpoint_state(0))
    path = str(tmp_path / "out" / "model_final.pth")
    # Its own classifier reads it as it is (the fc included), as pretraining resumes it.
    assert check_weights_fit(trainer.model, path) == len(trainer.model.state_dict())
    detector = _x14_fpn_detector()
    SafeDetectionCheckpointer(detector).load(path)
    spec = dataclasses.replace(ResNeXtSpec.from_config(cfg), norm="BN")
    source = build_resnext_classifier(spec, num_classes=3, out_features=STAGES).eval()
    source.load_state_dict(trainer.model.state_dict())
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = detector.backbone.bottom_up(x), source(x)
    for stage in STAGES:
        assert _relative(ours[stage], theirs[stage]) < EXACT, stage


# -- conventions ----------------------------------------------------------------------------


def test_published_weights_bring_their_conventions(server, caches, msra_r50_res4):
    server.put(MSRA_R50_URL, msra_r50_res4)
    ours = build_config(str(CONFIGS / "faster_rcnn_R50.yaml"), ["MODEL.WEIGHTS", MSRA_R50])
    with pytest.raises(ConfigError) as refused:
        check_config_conventions(ours)
    assert str(refused.value).endswith(
        "expected INPUT.FORMAT='BGR', MODEL.PIXEL_MEAN=[103.53, 116.28, 123.675], "
        "MODEL.PIXEL_STD=[1.0, 1.0, 1.0], MODEL.RESNETS.STRIDE_IN_1X1=True (with other "
        "conventions the weights still load and train, several AP worse)"
    )
    # Detectron2's zoo config that names them, with the backbone switched to ours.
    zoo = Path(detectron2.__file__).parent / "model_zoo" / "configs"
    theirs = build_config(
        str(zoo / "COCO-Detection" / "faster_rcnn_R_50_FPN_3x.yaml"),
        ["MODEL.BACKBONE.NAME", "build_resnext_fpn_backbone"],
    )
    assert theirs.MODEL.WEIGHTS == MSRA_R50
    check_config_conventions(theirs)


def _set_everywhere(node, key, value) -> int:
    count = 0
    if isinstance(node, DictConfig):
        for name in list(node.keys()):
            if name == key:
                node[name] = value
                count += 1
            else:
                count += _set_everywhere(node[name], key, value)
    elif isinstance(node, ListConfig):
        for item in node:
            count += _set_everywhere(item, key, value)
    return count


def test_lazy_config_conventions_are_checked_too(server, caches, torchvision_x14):
    _, data, url = torchvision_x14
    server.put(url, data)
    lazy = LazyConfig.load(str(CONFIGS / "faster_rcnn_X50_32x4d_FPN.py"))
    lazy.train.init_checkpoint = url
    check_lazy_config_conventions(lazy)  # as shipped: torchvision's conventions
    lazy.dataloader.train.mapper.image_format = "BGR"
    assert _set_everywhere(lazy.model, "stride_in_1x1", True) >= 1
    with pytest.raises(ConfigError) as refused:
        check_lazy_config_conventions(lazy)
    assert "dataloader.train.mapper.image_format='BGR'" in str(refused.value)
    assert re.search(r"expected .*stride_in_1x1=False", str(refused.value))


# -- the shipped configs ----------------------------------------------------------------------

DETECTION_YAMLS = sorted(
    [*CONFIGS.glob("faster_rcnn_*.yaml"), *CONFIGS.glob("mask_rcnn_*.yaml")]
    + [
        *(CONFIGS / "appendix_b").glob("*_rpn.yaml"),
        *(CONFIGS / "appendix_b").glob("*_fast_rcnn.yaml"),
    ]
)


@pytest.mark.parametrize("path", DETECTION_YAMLS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_each_shipped_config_names_its_published_weights_or_says_how_to_make_them(path):
    cfg = build_config(str(path))
    spec = ResNeXtSpec.from_config(cfg)
    network = (spec.depth, spec.cardinality, spec.bottleneck_width)
    if cfg.MODEL.WEIGHTS:
        published = find_published(cfg.MODEL.WEIGHTS)
        assert published is not None and published.network == network
        check_conventions(
            published.conventions,
            [
                ("format", "INPUT.FORMAT", cfg.INPUT.FORMAT),
                ("pixel_mean", "MODEL.PIXEL_MEAN", list(cfg.MODEL.PIXEL_MEAN)),
                ("pixel_std", "MODEL.PIXEL_STD", list(cfg.MODEL.PIXEL_STD)),
                ("stride_in_1x1", "MODEL.RESNETS.STRIDE_IN_1X1", cfg.MODEL.RESNETS.STRIDE_IN_1X1),
            ],
            str(path),
        )
        check_can_train(cfg)
    else:  # none published: the config says so, and the refusal says how to make them
        assert not [w for w in published_weights() if w.network == network]
        assert "tools/pretrain_imagenet.py" in path.read_text()
        with pytest.raises(
            ConfigError, match=r"none are published for ResNeXt-.*pretrain_imagenet"
        ):
            check_can_train(cfg)


@pytest.mark.parametrize(
    "name",
    ["faster_rcnn_X50_32x4d.py", "faster_rcnn_X50_32x4d_FPN.py", "mask_rcnn_X101_32x8d_FPN.py"],
)
def test_lazy_configs_name_the_weights_of_their_yaml_twins(name):
    twin = build_config(str(CONFIGS / name.replace(".py", ".yaml")))
    assert LazyConfig.load(str(CONFIGS / name)).train.init_checkpoint == twin.MODEL.WEIGHTS


def test_the_demo_trains_from_scratch_without_weights():
    assert build_config(str(DEMO_CONFIG)).MODEL.WEIGHTS == ""


def test_pretraining_commands_for_networks_without_published_weights():
    x101 = build_config(str(CONFIGS / "faster_rcnn_X101_32x4d.yaml"))
    with pytest.raises(ConfigError, match=r"--config-file configs/imagenet/X101_32x4d\.yaml`"):
        check_can_train(x101)
    x152 = build_config(str(CONFIGS / "faster_rcnn_X152_32x8d.yaml"))
    with pytest.raises(
        ConfigError,
        match=r"Base-ImageNet\.yaml MODEL\.RESNETS\.DEPTH 152 MODEL\.RESNETS\.NUM_GROUPS 32 ",
    ):
        check_can_train(x152)


# -- the tools, as a user runs them -----------------------------------------------------------


def test_the_converter_takes_a_name(server, caches, tmp_path, torchvision_x14):
    _, data, url = torchvision_x14
    server.put(url, data)
    run = run_cli("tools/convert_weights.py", url, tmp_path / "X14.pth", "--check-size", "64")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "source: torchvision" in run.stdout and (tmp_path / "X14.pth").is_file()


def test_the_headline_command_downloads_converts_trains_and_then_needs_no_network(
    server, caches, demo_root, tmp_path, torchvision_x14
):
    """configs/faster_rcnn_X50_32x4d.yaml at depth 14, with weights served as torchvision's."""
    _, data, url = torchvision_x14
    server.put(url, data)
    env = {
        "TORCH_HOME": caches / "torch", "FVCORE_CACHE": caches / "iopath",
        "DETECTRON2_DATASETS": demo_root, MIRROR_ENV: server.base,
    }  # fmt: skip
    args = [
        "--config-file", CONFIGS / "faster_rcnn_X50_32x4d.yaml", "MODEL.DEVICE", "cpu",
        "MODEL.RESNETS.DEPTH", "14", "MODEL.WEIGHTS", url, "MODEL.ROI_HEADS.NUM_CLASSES", "1",
        "DATASETS.TRAIN", "('demo_trees_train',)", "DATASETS.TEST", "()",
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "()",
        "SOLVER.WARMUP_ITERS", "1", "INPUT.MIN_SIZE_TRAIN", "(192,)", "INPUT.MAX_SIZE_TRAIN", "192",
        "MODEL.RPN.POST_NMS_TOPK_TRAIN", "100", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16",
        "DATALOADER.NUM_WORKERS", "0",
    ]  # fmt: skip
    first = _train_net(*args, "OUTPUT_DIR", tmp_path / "first", env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"Downloading {url} from the mirror" in first.stderr and "converted" in first.stderr
    assert (tmp_path / "first" / "model_final.pth").is_file()
    # No network now: the next run has the weights from the cache, and gets as far as the
    # conventions check, which refuses a config that mixes them.
    server.stop()
    mixed = ["INPUT.FORMAT", "BGR", "MODEL.RESNETS.STRIDE_IN_1X1", "True"]
    second = run_cli("tools/train_net.py", *args, *mixed, "OUTPUT_DIR", tmp_path / "2", env=env)
    assert "Downloading" not in second.stderr and "converted" not in second.stderr
    assert_one_line_error(
        second,
        rf"MODEL\.WEIGHTS='{re.escape(url)}' was trained with RGB input, .* stride in the 3x3 "
        r"conv, but the config has INPUT\.FORMAT='BGR', MODEL\.RESNETS\.STRIDE_IN_1X1=True; "
        r"expected INPUT\.FORMAT='RGB', MODEL\.RESNETS\.STRIDE_IN_1X1=False",
    )


def _train_net(*args, env):
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "train_net.py"), *map(str, args)],
        cwd=REPO,
        env={**os.environ, **{k: str(v) for k, v in env.items()}},
        capture_output=True,
        text=True,
    )
