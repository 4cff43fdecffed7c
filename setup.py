import glob
import os
import shutil
from os import path

from setuptools import find_packages, setup

HERE = path.dirname(path.realpath(__file__))


def model_zoo_configs() -> list[str]:
    """Ship configs/ inside the package as resnext_det/model_zoo/configs (Detectron2's way).

    configs/ stays the source: an editable install links to it, a wheel holds a copy.
    """
    source = path.join(HERE, "configs")
    destination = path.join(HERE, "resnext_det", "model_zoo", "configs")
    if path.exists(source):  # not in an sdist being built, where only the copy exists
        if path.islink(destination):
            os.unlink(destination)
        elif path.isdir(destination):
            shutil.rmtree(destination)
        try:
            os.symlink(source, destination)
        except OSError:
            shutil.copytree(source, destination)
    return [
        path.relpath(p, path.join(HERE, "resnext_det", "model_zoo"))
        for pattern in ("**/*.yaml", "**/*.py")
        for p in glob.glob(path.join(destination, pattern), recursive=True)
    ]


def console_scripts() -> list[str]:
    """``resnext-<name>`` for each command module (tools/ and datasets/ are thin copies)."""
    folder = path.join(HERE, "resnext_det", "reproduction", "commands")
    names = sorted(
        path.basename(p)[:-3] for p in glob.glob(path.join(folder, "*.py")) if "__" not in p
    )
    return [
        f"resnext-{name.replace('_', '-')}=resnext_det.reproduction.commands.{name}:cli"
        for name in names
    ]


setup(
    name="resnext-det",
    version="0.1.0",
    description="ResNeXt (Xie et al., CVPR 2017) for object detection, as a Detectron2 plugin",
    packages=find_packages(include=["resnext_det", "resnext_det.*"]),
    package_data={"resnext_det.model_zoo": model_zoo_configs()},
    python_requires=">=3.9",
    # Detectron2 is installed by scripts/setup_env.sh or from its own repository.
    install_requires=["torch", "torchvision", "fvcore", "pycocotools"],
    entry_points={"console_scripts": console_scripts()},
)
