"""Images as payloads (Independent ECC, cloud-only baselines): OpenCV's encoders (JPEG, WebP, PNG) and Pillow's
AVIF (libavif), and a decoder that checks the claimed size in the header before decoding a pixel."""
import io

import cv2
import numpy as np
from PIL import Image

from ..codec import PayloadError
from ..codec.validation import check_image_header

# codec -> (file extension, OpenCV quality flag (None: coded with Pillow), valid quality range, PIL format name)
IMAGE_CODECS = {
    "jpeg": (".jpg", cv2.IMWRITE_JPEG_QUALITY, (0, 100), "JPEG"),
    "webp": (".webp", cv2.IMWRITE_WEBP_QUALITY, (1, 101), "WEBP"),  # 101: lossless WebP
    "png": (".png", cv2.IMWRITE_PNG_COMPRESSION, (0, 9), "PNG"),  # lossless: the level trades time for bytes
    "avif": (".avif", None, (0, 100), "AVIF"),  # Pillow's AVIF (libavif, AV1 intra); 100: its best quality
}


def image_fingerprint(codec):
    """The 4 payload fingerprint bytes of images coded with ``codec``: any cloud-only model reads them."""
    return codec.upper().encode()[:4].ljust(4, b"\0")


def check_codec(codec, quality):
    """Raise ValueError unless ``codec`` is known and ``quality`` in its range."""
    if codec not in IMAGE_CODECS:
        raise ValueError(f"Unknown image codec {codec!r}; choose one of {sorted(IMAGE_CODECS)}.")
    lo, hi = IMAGE_CODECS[codec][2]
    if not lo <= int(quality) <= hi:
        raise ValueError(f"{codec} quality must be in [{lo}, {hi}], got {quality}.")


def encode_image(hwc, codec, quality):
    """Encode an HxWx3 uint8 BGR (or HxWx1 / HxW grayscale) image with OpenCV; returns the bytes."""
    check_codec(codec, quality)
    ext, flag = IMAGE_CODECS[codec][:2]
    img = hwc[:, :, 0] if hwc.ndim == 3 and hwc.shape[2] == 1 else hwc
    if flag is None:  # Pillow: RGB (or L) in, the container's bytes out
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(img[:, :, ::-1] if img.ndim == 3 else img)).save(
            buf, format=IMAGE_CODECS[codec][3], quality=int(quality))
        return buf.getvalue()
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(img), [flag, int(quality)])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode the image as {codec} (is this OpenCV built with it?)")
    return buf.tobytes()


def decode_image(data, image_size, codec, channels=3):
    """The HxWxC uint8 image (BGR for 3 channels) a payload string holds; :class:`PayloadError` unless its
    header claims ``image_size`` (checked before decoding) and it decodes to that size and ``channels``."""
    check_image_header(data, image_size, (IMAGE_CODECS[codec][3],))
    if IMAGE_CODECS[codec][1] is None:
        img = _pillow_decode(data, channels)
    else:
        # WebP has no grayscale mode: a 1-channel image comes back as 3 equal channels unless read as grayscale
        mode = cv2.IMREAD_COLOR if channels == 3 else cv2.IMREAD_GRAYSCALE if codec == "webp" else cv2.IMREAD_UNCHANGED
        img = cv2.imdecode(np.frombuffer(data, np.uint8), mode)
    if (img is None or img.dtype != np.uint8 or tuple(img.shape[:2]) != tuple(image_size)
            or (img.ndim == 3) != (channels == 3)):
        raise PayloadError(f"payload image is not a decodable {channels}-channel {codec} image of size "
                           f"{tuple(image_size)}")
    return img.reshape(*img.shape[:2], -1)


def _pillow_decode(data, channels):
    """The pixels of a Pillow-coded image as OpenCV would give them (BGR for 3 channels), or None."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            arr = np.asarray(im.convert("RGB" if channels == 3 else "L"))
    except Exception:  # noqa: BLE001  (any decoder failure is a bad payload, reported by the caller)
        return None
    return np.ascontiguousarray(arr[:, :, ::-1]) if channels == 3 else arr


def tensor_to_hwc(image, rgb):
    """A [C, H, W] tensor of 0-255 values as an HxWxC uint8 array, BGR-ordered (``rgb``: the tensor is RGB)."""
    hwc = image.permute(1, 2, 0).cpu().numpy().astype(np.uint8)
    return np.ascontiguousarray(hwc[:, :, ::-1] if rgb and hwc.shape[2] == 3 else hwc)
