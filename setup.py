"""eccentric_det: edge-cloud collaborative object detection for Detectron2.

Install with ``make install`` (install/install.sh): Detectron2 is not on PyPI, so the install step
brings it; this file installs the package (configs included as package data).
"""
from setuptools import Extension, find_packages, setup

setup(
    name="eccentric_det",
    version="0.1.0",
    description="Edge-cloud collaborative object detection (ECCENTRIC) for Detectron2",
    python_requires=">=3.9",
    packages=find_packages(include=["eccentric_det", "eccentric_det.*"]),
    package_data={"eccentric_det": ["configs/*.yaml", "configs/*/*.yaml"]},
    # the edge's rANS encoder (CompressAI's format over int32 buffers): plain C, no dependencies
    ext_modules=[Extension("eccentric_det.codec._rans", ["eccentric_det/codec/_rans.c"], extra_compile_args=["-O2"])],
    install_requires=[
        "torch>=2.0", "torchvision", "numpy<2", "opencv-python", "pycocotools>=2.0.2", "fvcore>=0.1.5,<0.1.6",
        "compressai==1.2.8", "timm", "onnx", "onnxruntime", "fastapi", "uvicorn", "httpx", "tqdm", "matplotlib",
    ],
    extras_require={"serve": ["ray[serve]"], "bench": ["sc2bench"], "test": ["pytest", "hypothesis", "import-linter"]},
)
