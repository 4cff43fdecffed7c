"""Shared fixtures: real Detectron2, real demo data, small sizes for a 2-core CPU."""

from pathlib import Path

import pytest

from resnext_det import register_resnext_backbone
from resnext_det.data import prepare_demo_dataset
from resnext_det.engine import register_all


@pytest.fixture(scope="session", autouse=True)
def registered() -> None:
    """The ResNeXt components in Detectron2's registries, as a user's project would have them."""
    register_resnext_backbone()


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A datasets root holding the prepared demo dataset (built once per session)."""
    root = tmp_path_factory.mktemp("datasets")
    prepare_demo_dataset(root)
    register_all(str(root))
    return root
