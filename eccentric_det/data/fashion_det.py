"""FashionDet: a small, deterministic detection set of Fashion-MNIST items pasted onto backgrounds.

Every image is drawn from its own ``numpy`` generator seeded by ``(seed, split, index)``, so the
set is byte-for-byte reproducible and any single image can be recomposed on its own
(:func:`image_rng` + :func:`compose_image`). Needs numpy and OpenCV only (no Detectron2).
"""
import functools
import gzip
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
DEFAULT_FASHION_ROOT = "/usr/share/datasets/fashion-mnist"
DEFAULT_BACKGROUNDS = "/usr/share/darknet/data"
SPLITS = {"train": "train", "val": "t10k"}  # FashionDet split -> Fashion-MNIST split
MIN_SCALE, MAX_SCALE = 16, 96  # side of the pasted 28x28 item, px
MAX_OBJECTS = 6
MAX_IOU = 0.25
ALPHA_THRESHOLD = 0.08  # item pixels above this alpha make up its box
JPEG_QUALITY = 95


def read_idx(path):
    """Read an idx file (``.gz`` or raw) into a uint8/int array of its declared shape."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte idx file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _idx_path(root, name):
    for p in (Path(root) / f"{name}.gz", Path(root) / name):
        if p.is_file():
            return p
    raise FileNotFoundError(
        f"Fashion-MNIST file {name}[.gz] not found under {root}: install the Debian package "
        "`dataset-fashion-mnist` (apt-get install dataset-fashion-mnist) or pass --fashion-root DIR"
    )


@functools.lru_cache(maxsize=4)
def load_fashion_mnist(root, split):
    """Return ``(images [N,28,28] uint8, labels [N] uint8)`` of Fashion-MNIST ``split`` ("train"/"t10k")."""
    images = read_idx(_idx_path(root, f"{split}-images-idx3-ubyte"))
    labels = read_idx(_idx_path(root, f"{split}-labels-idx1-ubyte"))
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{root}/{split}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels


def load_backgrounds(directory):
    """Load the ``*.jpg`` photos of ``directory`` (sorted by name) as float32 RGB in [0, 1]; [] if none."""
    if directory is None or not Path(directory).is_dir():
        return []
    photos = []
    for p in sorted(Path(directory).glob("*.jpg")):
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is not None:
            photos.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0)
    return photos


def image_rng(seed, split, index):
    """The generator that draws image ``index`` of ``split`` ("train"/"val")."""
    return np.random.default_rng([seed, list(SPLITS).index(split), index])


def sample_scale(rng):
    """Side of a pasted item: log-uniform integer in [16, 96], so small objects are common."""
    return int(np.exp(rng.uniform(np.log(MIN_SCALE), np.log(MAX_SCALE + 1))))


def _noise_background(rng, size):
    """Smooth multi-octave colour noise (summed at a quarter of the resolution, then upscaled)."""
    low = max(size // 4, 16)
    bg = np.zeros((low, low, 3), np.float32)
    amp, persistence = 1.0, rng.uniform(0.45, 0.7)
    for cells in (2, 4, 8, 16, 32):
        grid = rng.random((cells + 1, cells + 1, 3), dtype=np.float32)
        bg += amp * cv2.resize(grid, (low, low), interpolation=cv2.INTER_CUBIC)
        amp *= persistence
    bg = cv2.resize(bg, (size, size), interpolation=cv2.INTER_CUBIC)
    bg = (bg - bg.mean((0, 1))) / (bg.std() + 1e-6)
    return bg * rng.uniform(0.06, 0.2) + rng.uniform(0.15, 0.75, 3).astype(np.float32)


def _photo_background(rng, size, photo):
    """A random square crop of ``photo``, blurred, darkened, plus Gaussian noise."""
    h, w = photo.shape[:2]
    c = int(rng.uniform(0.35, 1.0) * min(h, w))
    y, x = rng.integers(0, h - c + 1), rng.integers(0, w - c + 1)
    bg = cv2.resize(photo[y:y + c, x:x + c], (size, size), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        bg = np.ascontiguousarray(bg[:, ::-1])
    bg = cv2.GaussianBlur(bg, (0, 0), rng.uniform(1.0, 3.0)) * rng.uniform(0.35, 0.75)
    return bg + rng.uniform(0.02, 0.06) * rng.standard_normal(bg.shape, dtype=np.float32)


def _iou(a, b):
    """IoU of two XYWH boxes."""
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def compose_image(rng, items, labels, size, photos=(), return_masks=False):
    """Draw one image from ``rng``: a background and 1-6 items from ``items``/``labels``.

    Returns ``(rgb uint8 [size,size,3], objects)``, each object a dict with ``category_id`` (1..10),
    ``bbox`` (XYWH, tight around alpha > 0.08), ``area`` and ``scale`` (pasted side, px); with
    ``return_masks`` also a list of full-canvas float32 alpha masks, one per object.
    """
    use_photo = rng.random() < 0.5 and len(photos) > 0
    canvas = (_photo_background(rng, size, photos[rng.integers(len(photos))]) if use_photo
              else _noise_background(rng, size))
    objects, masks = [], []
    for _ in range(rng.integers(1, MAX_OBJECTS + 1)):
        k = rng.integers(len(items))
        s = min(sample_scale(rng), size)
        interp = cv2.INTER_AREA if s < items.shape[1] else cv2.INTER_LINEAR
        alpha = np.clip(cv2.resize(items[k].astype(np.float32) / 255.0, (s, s), interpolation=interp), 0, 1)
        ys, xs = np.nonzero(alpha > ALPHA_THRESHOLD)
        contrast, brightness = rng.uniform(0.6, 1.4), rng.uniform(-0.2, 0.2)
        tint = rng.uniform(0.3, 1.0, 3) if rng.random() < 0.5 else np.ones(3)
        tint = (tint / tint.max()).astype(np.float32)
        if len(xs) == 0:
            continue
        x0, y0, w, h = int(xs.min()), int(ys.min()), int(xs.max() - xs.min()) + 1, int(ys.max() - ys.min()) + 1
        for _attempt in range(20):
            x, y = int(rng.integers(0, size - s + 1)), int(rng.integers(0, size - s + 1))
            box = [x + x0, y + y0, w, h]
            if all(_iou(box, o["bbox"]) <= MAX_IOU for o in objects):
                break
        else:
            continue
        value = np.clip(0.5 + (alpha - 0.5) * contrast + brightness, 0, 1)
        a = alpha[..., None]
        canvas[y:y + s, x:x + s] = canvas[y:y + s, x:x + s] * (1 - a) + value[..., None] * tint * a
        objects.append({"category_id": int(labels[k]) + 1, "bbox": box, "area": box[2] * box[3], "scale": s})
        if return_masks:
            mask = np.zeros((size, size), np.float32)
            mask[y:y + s, x:x + s] = alpha
            masks.append(mask)
    rgb = (np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8)
    return (rgb, objects, masks) if return_masks else (rgb, objects)


def _write_atomic(path, data):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _generate_split(out_dir, split, items, labels, num, size, seed, photos):
    image_dir = out_dir / split
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(num):
        rgb, objects = compose_image(image_rng(seed, split, i), items, labels, size, photos)
        name = f"{i:06d}.jpg"
        ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {image_dir / name}")
        _write_atomic(image_dir / name, buf.tobytes())
        images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
        for o in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": o["category_id"],
                                "bbox": o["bbox"], "area": o["area"], "iscrowd": 0})
    keep = {im["file_name"] for im in images}
    for stale in image_dir.glob("[0-9]*.jpg"):
        if stale.name not in keep:
            stale.unlink()
    coco = {
        "info": {"description": f"FashionDet {split}", "seed": seed, "size": size},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n, "supercategory": "fashion"} for i, n in enumerate(FASHION_CLASSES)],
    }
    _write_atomic(out_dir / "annotations" / f"fashion_det_{split}.json", json.dumps(coco).encode())
    return {"images": len(images), "boxes": len(annotations)}


def generate_fashion_det(out_dir, fashion_root=DEFAULT_FASHION_ROOT, backgrounds=DEFAULT_BACKGROUNDS,
                         num_train=3000, num_val=500, size=256, seed=0):
    """Write FashionDet to ``out_dir``: ``{train,val}/NNNNNN.jpg``, ``annotations/fashion_det_{split}.json``
    (COCO) and finally a ``DONE`` marker. Returns ``{"train": {"images", "boxes"}, "val": {...}}``."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    (out_dir / "annotations").mkdir(parents=True, exist_ok=True)
    for stale in [out_dir / "DONE"] + [out_dir / "annotations" / f"fashion_det_{s}.json" for s in SPLITS]:
        stale.unlink(missing_ok=True)  # an interrupted run must not leave a set that looks complete
    photos = load_backgrounds(backgrounds)
    if not photos:
        print(f"[fashion_det] no *.jpg backgrounds found in {backgrounds}: using texture backgrounds only "
              "(install the Debian package `darknet` or pass --backgrounds DIR for photo backgrounds)")
    fashion_root = str(fashion_root)
    counts = {}
    for split, mnist_split in SPLITS.items():
        items, labels = load_fashion_mnist(fashion_root, mnist_split)
        num = num_train if split == "train" else num_val
        counts[split] = _generate_split(out_dir, split, items, labels, num, size, seed, photos)
    done = {"seed": seed, "size": size, "num_train": num_train, "num_val": num_val,
            "fashion_root": fashion_root, "backgrounds": str(backgrounds), "num_photos": len(photos),
            "counts": counts, "seconds": round(time.perf_counter() - start, 2)}
    _write_atomic(out_dir / "DONE", (json.dumps(done, indent=1) + "\n").encode())
    return counts
