"""Classification datasets held in memory as uint8 tensors: Fashion-MNIST and CIFAR-10. Nothing is downloaded.

Dataset names (``DATASETS.TRAIN`` / ``DATASETS.TEST``): ``fashion_mnist_{train,test}`` read the idx files of the
Debian package ``dataset-fashion-mnist``; ``cifar10_{train,test}`` read torchvision's standard layout
(``ROOT/cifar-10-batches-py``, the python batches from the dataset's authors).
"""
import math
import os
from dataclasses import dataclass
from typing import List

import torch
from torchvision.datasets import CIFAR10

from ..data.datasets import datasets_root
from ..data.fashion_det import DEFAULT_FASHION_ROOT, FASHION_CLASSES, load_fashion_mnist

DATASETS = ("fashion_mnist_train", "fashion_mnist_test", "cifar10_train", "cifar10_test")


@dataclass
class ClsData:
    """Images [N, C, H, W] uint8 (RGB for 3 channels) and labels [N] int64."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: List[str]

    def __len__(self):
        return len(self.labels)

    def slice(self, start, stop=None):
        """Images ``start:stop`` (views, not copies)."""
        return ClsData(self.name, self.images[start:stop], self.labels[start:stop], self.classes)


def default_root(name):
    if name.startswith("fashion_mnist"):
        return DEFAULT_FASHION_ROOT
    return datasets_root()


def load_cls_dataset(name, root=""):
    """Load dataset ``name`` (one of :data:`DATASETS`) from ``root`` ("" = :func:`default_root`)."""
    if name not in DATASETS:
        raise KeyError(f"Unknown classification dataset {name!r}; known: {', '.join(DATASETS)}")
    root = root or default_root(name)
    split = name.rsplit("_", 1)[1]
    if name.startswith("fashion_mnist"):
        try:
            images, labels = load_fashion_mnist(root, "train" if split == "train" else "t10k")
        except FileNotFoundError as e:
            raise FileNotFoundError(f"Fashion-MNIST not found under {root}: install it with `apt-get install "
                                    f"dataset-fashion-mnist`, or set DATA_CLS.ROOT to a directory holding "
                                    f"{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz]") from e
        return ClsData(name, torch.from_numpy(images.copy())[:, None], torch.from_numpy(labels.astype("int64")),
                       list(FASHION_CLASSES))
    if not os.path.isdir(os.path.join(root, "cifar-10-batches-py")):
        raise FileNotFoundError(f"CIFAR-10 not found: {root}/cifar-10-batches-py does not exist. Unpack "
                                f"cifar-10-python.tar.gz there (torchvision's layout), or set DATA_CLS.ROOT / "
                                f"DETECTRON2_DATASETS to the directory that holds cifar-10-batches-py")
    ds = CIFAR10(root, train=split == "train", download=False)
    return ClsData(name, torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets),
                   list(ds.classes))


def train_and_holdout(cfg):
    """The training images (first ``len - HOLDOUT``, at most ``TRAIN_LIMIT``) and the held-out calibration
    images (the last ``HOLDOUT``) of ``DATASETS.TRAIN[0]``."""
    data = load_cls_dataset(cfg.DATASETS.TRAIN[0], cfg.DATA_CLS.ROOT)
    D = cfg.DATA_CLS
    if not 0 <= D.HOLDOUT < len(data):
        raise ValueError(f"DATA_CLS.HOLDOUT {D.HOLDOUT} must leave training images ({len(data)} in {data.name})")
    cut = len(data) - D.HOLDOUT
    train = data.slice(0, min(cut, D.TRAIN_LIMIT) if D.TRAIN_LIMIT else cut)
    return train, data.slice(cut)


def test_data(cfg):
    """The first ``TEST_LIMIT`` (0: all) images of ``DATASETS.TEST[0]``."""
    data = load_cls_dataset(cfg.DATASETS.TEST[0], cfg.DATA_CLS.ROOT)
    return data.slice(0, cfg.DATA_CLS.TEST_LIMIT or None)


def batches(data, batch_size, generator, flip=False, crop_padding=0, erase_prob=0.0):
    """Endless shuffled batches ``(images, labels)``, optionally with random horizontal flips, random crops of
    the image zero-padded by ``crop_padding`` pixels on each side (the image's own size) and, for a fraction
    ``erase_prob`` of the images, one rectangle of random pixels (:func:`random_erasing`)."""
    while True:
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, max(len(order) - batch_size, 0) + 1, batch_size):  # drop the last partial batch
            idx = order[start:start + batch_size]
            images = data.images[idx]
            if flip:
                mask = torch.rand(len(idx), generator=generator) < 0.5
                images[mask] = images[mask].flip(-1)
            if crop_padding:
                images = random_crops(images, crop_padding, generator)
            if erase_prob:
                images = random_erasing(images, erase_prob, generator)
            yield images, data.labels[idx]


def random_crops(images, padding, generator):
    """Each image of ``images`` [N, C, H, W] shifted by a random offset in [-padding, padding] on both axes, the
    uncovered border filled with zeros (a random HxW crop of the image zero-padded by ``padding``)."""
    n, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    dy, dx = torch.randint(0, 2 * padding + 1, (2, n), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None].expand(n, images.shape[1], h, padded.shape[-1])
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :].expand(n, images.shape[1], h, w)
    return out.gather(3, cols)


def random_erasing(images, prob, generator, area=(0.02, 0.4), aspect=(0.3, 3.3)):
    """Random erasing (Zhong et al., AAAI 2020) of uint8 ``images`` [N, C, H, W]: each image, with probability
    ``prob``, gets one rectangle of ``area`` (a fraction of the image) and ``aspect`` (height / width) drawn
    uniformly (the aspect on a log scale) at a uniform position, filled with uniform random pixel values."""
    n, _, h, w = images.shape
    u = torch.rand(5, n, generator=generator)
    s = (area[0] + (area[1] - area[0]) * u[0]) * h * w
    r = torch.exp(math.log(aspect[0]) + (math.log(aspect[1]) - math.log(aspect[0])) * u[1])
    eh = torch.sqrt(s * r).round().clamp(1, h).long()
    ew = torch.sqrt(s / r).round().clamp(1, w).long()
    top = (u[2] * (h - eh + 1)).long()
    left = (u[3] * (w - ew + 1)).long()
    rows = torch.arange(h)[None, :]
    cols = torch.arange(w)[None, :]
    inside = (((rows >= top[:, None]) & (rows < (top + eh)[:, None]))[:, :, None]
              & ((cols >= left[:, None]) & (cols < (left + ew)[:, None]))[:, None, :])
    inside &= (u[4] < prob)[:, None, None]
    noise = torch.randint(0, 256, images.shape, generator=generator, dtype=torch.uint8)
    return torch.where(inside[:, None], noise, images)
