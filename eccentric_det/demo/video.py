"""Video in and out for the demo: a frame source that knows its length, and an MP4 writer that falls
back from H.264 to MPEG-4 Part 2 when OpenCV has no H.264 encoder (pip's opencv-python has none)."""
import contextlib
import logging
import math
import os

import cv2

logger = logging.getLogger(__name__)

# (fourcc, name) in order of preference.
CODECS = (("avc1", "H.264"), ("mp4v", "MPEG-4 Part 2"))
DEFAULT_FPS = 25.0


class DemoError(Exception):
    """Bad input to the demo (a missing or unreadable video, an unwritable output, a wrong config)."""


class VideoSource:
    """The BGR uint8 frames of a video file (a path) or a webcam (an int), with ``fps``, ``size``
    (w, h) and ``frame_count`` (None when the container does not say). Iterating reads it once."""

    def __init__(self, source):
        if isinstance(source, int):
            self.name = f"webcam {source}"
        else:
            self.name = os.fspath(source)
            if not os.path.isfile(self.name):
                raise DemoError(f"video {self.name!r} not found")
        self._cap = cv2.VideoCapture(source)
        ok, self._first = self._cap.read() if self._cap.isOpened() else (False, None)
        if not ok:
            self._cap.release()
            why = "no camera answered" if isinstance(source, int) else "not a video OpenCV can decode"
            raise DemoError(f"cannot read {self.name}: {why}")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else DEFAULT_FPS
        self.size = (self._first.shape[1], self._first.shape[0])
        count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if count > 0 and math.isfinite(count) else None

    def __iter__(self):
        frame, self._first = self._first, None
        while frame is not None:
            yield frame
            ok, frame = self._cap.read()
            if not ok:
                frame = None
        self._cap.release()


@contextlib.contextmanager
def _quiet_opencv():
    """Silence OpenCV's own log while probing encoders (a missing one logs errors)."""
    level = cv2.getLogLevel()
    cv2.setLogLevel(0)
    try:
        yield
    finally:
        cv2.setLogLevel(level)


def open_writer(path, fps, size, codecs=CODECS):
    """An opened ``cv2.VideoWriter`` for ``path`` (frames of ``size`` = (w, h)) and the fourcc it
    uses: the first of ``codecs`` this OpenCV can encode. Raises :class:`DemoError` if none can."""
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise DemoError(f"cannot write {path}: cannot create its folder ({e.strerror})") from e
    if not os.access(parent, os.W_OK):
        raise DemoError(f"cannot write {path}: folder {parent} is not writable")
    for fourcc, name in codecs:
        with _quiet_opencv():
            writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if writer.isOpened():
            logger.info("Writing %s with %s (%s)", path, name, fourcc)
            return writer, fourcc
        writer.release()
        logger.info("OpenCV cannot encode %s (%s) here", name, fourcc)
    raise DemoError(f"cannot write {path}: this OpenCV encodes none of "
                    f"{', '.join(f'{n} ({c})' for c, n in codecs)} (is it built without FFmpeg?)")
