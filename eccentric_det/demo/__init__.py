"""The video demo: edge -> (maybe) cloud per frame, with an overlay, a per-frame log and a summary
(``tools/demo.py``), and the embedded default video it runs on (``datasets/prepare_demo_video.py``)."""
from .cloud import HttpCloud, InProcessCloud
from .compose import compose_demo_video, default_video_path, ensure_default_video
from .predictor import EccentricPredictor, format_summary, run_on_images, run_on_video, setup_cfg
from .video import DemoError

__all__ = [
    "DemoError",
    "EccentricPredictor",
    "HttpCloud",
    "InProcessCloud",
    "compose_demo_video",
    "default_video_path",
    "ensure_default_video",
    "format_summary",
    "run_on_images",
    "run_on_video",
    "setup_cfg",
]
