from setuptools import find_packages, setup

setup(
    name="resnext-det",
    version="0.1.0",
    description="ResNeXt (Xie et al., CVPR 2017) for object detection, as a Detectron2 plugin",
    packages=find_packages(include=["resnext_det", "resnext_det.*"]),
    python_requires=">=3.9",
    # Detectron2 is installed by scripts/setup_env.sh or from its own repository.
    install_requires=["torch", "torchvision", "fvcore", "pycocotools"],
)
