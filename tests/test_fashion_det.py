"""FashionDet: determinism, exact boxes, COCO validity, registration and the missing-data message."""
import itertools
import json

import cv2
import numpy as np
import pytest

from eccentric_det.data import fashion_det as fd
from eccentric_det.data import register_fashion_det

SIZE = 128
BACKGROUNDS = fd.DEFAULT_BACKGROUNDS  # texture-only backgrounds when the darknet photos are absent
needs_fashion_mnist = pytest.mark.fashion_mnist


def _generate(out, seed=0):
    return fd.generate_fashion_det(out, backgrounds=BACKGROUNDS, num_train=8, num_val=4, size=SIZE, seed=seed)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("fd") / "fashion_det"
    _generate(root)
    return root


def _json(root, split="train"):
    with open(root / "annotations" / f"fashion_det_{split}.json", "rb") as f:
        return f.read()


def _images(root, split="train"):
    return [cv2.imread(str(p)) for p in sorted((root / split).glob("*.jpg"))]


@needs_fashion_mnist
def test_deterministic(tiny, tmp_path):
    _generate(tmp_path / "same")
    _generate(tmp_path / "other", seed=1)
    for split in fd.SPLITS:
        assert _json(tiny, split) == _json(tmp_path / "same", split)
        assert all(np.array_equal(a, b) for a, b in zip(_images(tiny, split), _images(tmp_path / "same", split)))
        assert _json(tiny, split) != _json(tmp_path / "other", split)
    assert not np.array_equal(_images(tiny)[0], _images(tmp_path / "other")[0])


@needs_fashion_mnist
def test_boxes_match_pasted_masks(tiny):
    items, labels = fd.load_fashion_mnist(fd.DEFAULT_FASHION_ROOT, "train")
    photos = fd.load_backgrounds(BACKGROUNDS)
    coco = json.loads(_json(tiny))
    for im in coco["images"]:
        rgb, objects, masks = fd.compose_image(fd.image_rng(0, "train", im["id"] - 1), items, labels, SIZE,
                                               photos, return_masks=True)
        anns = [a for a in coco["annotations"] if a["image_id"] == im["id"]]
        assert [a["bbox"] for a in anns] == [o["bbox"] for o in objects]
        for ann, mask in zip(anns, masks):
            ys, xs = np.nonzero(mask > fd.ALPHA_THRESHOLD)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert ann["area"] == ann["bbox"][2] * ann["bbox"][3]
        jpeg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, fd.JPEG_QUALITY])[1].tobytes()
        assert (tiny / "train" / im["file_name"]).read_bytes() == jpeg  # the written image is this composition


def test_scales_cover_small_and_large():
    rng = np.random.default_rng(0)
    scales = [fd.sample_scale(rng) for _ in range(3000)]
    assert min(scales) == fd.MIN_SCALE and max(scales) == fd.MAX_SCALE
    assert sum(s < 32 for s in scales) > len(scales) / 3  # small objects are common


@needs_fashion_mnist
def test_coco_validity(tiny):
    small = 0
    for split, n in (("train", 8), ("val", 4)):
        coco = json.loads(_json(tiny, split))
        assert len(coco["images"]) == n and len(list((tiny / split).glob("*.jpg"))) == n
        assert [c["name"] for c in coco["categories"]] == fd.FASHION_CLASSES
        by_image = {}
        for a in coco["annotations"]:
            x, y, w, h = a["bbox"]
            assert 1 <= a["category_id"] <= 10 and a["iscrowd"] == 0
            assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= SIZE and y + h <= SIZE
            by_image.setdefault(a["image_id"], []).append(a["bbox"])
        assert len(by_image) == n  # every image has at least one object
        small += sum(max(a["bbox"][2:]) < 32 for a in coco["annotations"])
        for boxes in by_image.values():
            assert all(fd._iou(a, b) <= fd.MAX_IOU for a, b in itertools.combinations(boxes, 2))
    assert small > 0
    assert json.loads((tiny / "DONE").read_text())["counts"]["val"]["images"] == 4


@needs_fashion_mnist
def test_registered_dataset_loads(tiny):
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.structures import BoxMode

    register_fashion_det(tiny, prefix="tiny_fd")
    register_fashion_det(tiny, prefix="tiny_fd")  # re-registering is a no-op
    records = DatasetCatalog.get("tiny_fd_train")
    assert len(records) == 8 and len(DatasetCatalog.get("tiny_fd_val")) == 4
    assert all(a["bbox_mode"] == BoxMode.XYWH_ABS for r in records for a in r["annotations"])
    assert all(0 <= a["category_id"] < 10 for r in records for a in r["annotations"])
    meta = MetadataCatalog.get("tiny_fd_val")
    assert meta.thing_classes == fd.FASHION_CLASSES and meta.evaluator_type == "coco"


def test_missing_or_incomplete_root(tmp_path):
    from detectron2.data import DatasetCatalog

    from eccentric_det.data import check_dataset_available

    register_fashion_det(tmp_path / "nowhere", prefix="missing_fd")
    with pytest.raises(FileNotFoundError, match="prepare_fashion_det.py"):
        DatasetCatalog.get("missing_fd_train")
    with pytest.raises(FileNotFoundError, match="prepare_fashion_det.py"):
        check_dataset_available("missing_fd_val")
    half = tmp_path / "half"
    (half / "train").mkdir(parents=True)
    register_fashion_det(half, prefix="half_fd")
    with pytest.raises(FileNotFoundError, match="incomplete.*prepare_fashion_det.py"):
        DatasetCatalog.get("half_fd_train")
