"""Weight files load without running code: a crafted pickle is refused before it acts."""

import os
import pickle

import pytest
import torch

from resnext_det.checkpoint import SafeDetectionCheckpointer, UnsafePickleError
from resnext_det.modeling import ResNeXtSpec, build_resnext


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _backbone():
    return build_resnext(ResNeXtSpec(depth=14, norm="BN"), out_features=["res3"])


def test_crafted_pickle_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(
        pickle.dumps({"model": {"stem.conv1.weight": _Exploit(marker)}, "__author__": "x"})
    )
    with pytest.raises(UnsafePickleError, match=r"refusing to load (posix|os)\.system"):
        SafeDetectionCheckpointer(_backbone()).load(str(path))
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_model_zoo_pickle_of_numpy_arrays_loads(tmp_path, protocol):
    source = _backbone()
    path = tmp_path / "weights.pkl"
    arrays = {k: v.numpy() for k, v in source.state_dict().items()}
    path.write_bytes(pickle.dumps({"model": arrays, "__author__": "test"}, protocol=protocol))
    target = _backbone()
    SafeDetectionCheckpointer(target).load(str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_torch_checkpoint_loads_with_weights_only(tmp_path):
    source = _backbone()
    path = tmp_path / "weights.pth"
    torch.save({"model": source.state_dict(), "iteration": 7}, path)
    target = _backbone()
    extra = SafeDetectionCheckpointer(target).load(str(path))
    assert extra["iteration"] == 7
    assert torch.equal(target.stem.conv1.weight, source.stem.conv1.weight)

    evil = tmp_path / "evil.pth"
    torch.save({"model": {"x": _Exploit(tmp_path / "pwned")}}, evil)
    with pytest.raises(pickle.UnpicklingError):
        SafeDetectionCheckpointer(_backbone()).load(str(evil))
    assert not (tmp_path / "pwned").exists()


def test_a_config_naming_python_objects_is_refused_and_does_not_run(tmp_path):
    """Detectron2 loads yaml unsafely by default; a config file could run code."""
    from resnext_det.config import merge_config
    from resnext_det.reproduction.engine import build_config
    from resnext_det.reproduction.pretrain import get_pretrain_cfg
    from resnext_det.utils.errors import ConfigError

    marker = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    config.write_text(f'MODEL:\n  WEIGHTS: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ConfigError, match="asks the yaml loader to build a Python object"):
        build_config(str(config))
    with pytest.raises(ConfigError, match="asks the yaml loader to build a Python object"):
        merge_config(get_pretrain_cfg(), str(config))
    assert not marker.exists()


def test_a_crafted_cifar_batch_is_refused_and_does_not_run(tmp_path):
    from resnext_det.reproduction.pretrain.data import CifarDataset

    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(pickle.dumps({"data": _Exploit(marker), "labels": [0]}))
    with pytest.raises(UnsafePickleError, match="refusing to load"):
        CifarDataset(tmp_path, "cifar10", train=True)
    assert not marker.exists()
