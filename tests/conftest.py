"""Shared fixtures: real Detectron2, real demo data, small sizes for a 2-core CPU."""

import os
from pathlib import Path

import pytest
import torch

from resnext_det import register_resnext_backbone
from resnext_det.reproduction.data import prepare_demo_dataset
from resnext_det.reproduction.engine import register_all

# The suite runs as one pytest-xdist worker per core (pyproject.toml): each worker, and every
# tool it starts, computes on one thread, so that two workers share two cores without
# oversubscribing them. Much of a test's time is single-threaded anyway (imports, Python).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def no_downloads(tmp_path_factory) -> None:
    """No test reaches the internet or the user's weight caches: torch hub's and iopath's
    caches are the session's own, and a weight name that would download meets a mirror
    nobody serves (a closed port on 127.0.0.1), so it ends in its one-line error. Tests of
    downloads set their own server as the mirror."""
    caches = tmp_path_factory.mktemp("weight_caches")
    os.environ["TORCH_HOME"] = str(caches / "torch")
    os.environ["FVCORE_CACHE"] = str(caches / "iopath")
    os.environ["RESNEXT_DET_MIRROR"] = "http://127.0.0.1:9"


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
