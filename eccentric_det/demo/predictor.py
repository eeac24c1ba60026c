"""Edge -> (maybe) cloud on one frame at a time, the overlay that shows it, the per-frame log and
the run summary; :func:`run_on_video` and :func:`run_on_images` drive them."""
import glob
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Instances
from detectron2.utils.colormap import colormap
from tqdm import tqdm

from ..checkpoint import load_model
from ..deploy.torch_edge import TorchEdge, stream_options
from ..edge.stream import BUDGET_KEPT, EdgeStream, stream_controls
from ..inputs import InputBuilder
from ..serving.detections import dict_to_instances, instances_to_dict
from ..split.rate_control import check_stream_options
from ..tasks import get_eccentric_cfg
from ..modeling.meta_arch.eccentric_rcnn import EccentricRCNN
from .accuracy import BoxAccuracy, ground_truth_of
from .cloud import InProcessCloud
from .shown import ShownFilter
from .video import DemoError, VideoSource, open_writer

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_COLORS = [tuple(int(v) for v in c) for c in colormap(rgb=False, maximum=255)]
_GREEN, _ORANGE, _WHITE, _BLACK = (60, 170, 60), (0, 140, 255), (255, 255, 255), (0, 0, 0)
_BLUE = (200, 120, 40)
logger = logging.getLogger(__name__)


def setup_cfg(config_file, opts=()):
    """The demo's config (``get_eccentric_cfg``), with a bad file or key as one :class:`DemoError`."""
    try:
        return get_eccentric_cfg(config_file, opts)
    except (FileNotFoundError, KeyError, ValueError) as e:
        raise DemoError(f"config {config_file}: {e.args[0] if e.args else e}") from e


def check_cfg(cfg):
    """Raise :class:`DemoError` unless ``cfg`` has ``add_eccentric_config``'s keys and builds an EccentricRCNN."""
    if "ECCENTRIC" not in cfg.MODEL:
        raise DemoError("config has no MODEL.ECCENTRIC: build it with eccentric_det.config.get_eccentric_cfg "
                        "(or call add_eccentric_config(cfg) before merging the file)")
    name = cfg.MODEL.META_ARCHITECTURE
    if name not in META_ARCH_REGISTRY or not issubclass(META_ARCH_REGISTRY.get(name), EccentricRCNN):
        raise DemoError(f"MODEL.META_ARCHITECTURE is {name!r}, not an EccentricRCNN: the demo needs an "
                        f"eccentric_det config such as configs/FashionDet/dynamic_ecc_vr.yaml")


@dataclass
class FrameResult:
    """What the demo knows about one frame."""

    instances: Instances  # the answer (cloud's when offloaded, else edge's), score >= the confidence threshold
    offloaded: bool
    bytes: int  # payload bytes sent (0 when the edge kept the frame)
    score: float  # the edge's "needs the cloud" probability
    edge_ms: float
    cloud_ms: float
    tiles: list = field(default_factory=list)  # region-level Dynamic ECC: (x0, y0, x1, y1) of each tile sent, frame pixels
    source: str = "edge"  # who answered (eccentric_det.edge.stream.SOURCES)
    rate: Optional[float] = None  # the rate level rate control coded at (None: the configured one)
    reused: int = 0  # tiles (or 1: the whole frame) answered from the reuse cache


class EccentricPredictor:
    """One BGR frame at a time, as a device would: the edge's stream loop
    (:class:`~eccentric_det.edge.stream.EdgeStream`: the edge step, the budget and reuse decision, the payload's bytes
    to ``cloud`` (default: the model's own cloud half, in process), the merge).

    ``offload_threshold`` switches the model to the dynamic policy at that threshold (0: every
    frame goes to the cloud, above 1: none). ``confidence_threshold`` and ``agnostic_iou`` (one label per object:
    class-agnostic NMS at that IoU, 0: off; :func:`~eccentric_det.demo.shown.shown`) only filter what is shown
    and logged: the edge's offload decision sees all of its detections, as it was fitted to. The budget and
    reuse come from ``MODEL.ECCENTRIC.OFFLOAD`` (BUDGET_KBPS, FPS, BUFFER_S, REUSE.*); :meth:`start_stream` starts a
    new stream (an empty bucket and cache) at a video's frame rate, with options overridden. ``edge``: the edge step
    the stream runs, e.g. the same model exported as a device runs it (:class:`~eccentric_det.edge.ExportedEdge`,
    whose fingerprint must be the model's); default: the model's edge half in PyTorch. ``label_decay``: one label
    per object over the stream (:class:`~eccentric_det.demo.shown.LabelVote`; 0: off), applied to what is shown.
    """

    def __init__(self, cfg, cloud=None, offload_threshold=None, confidence_threshold=0.5, agnostic_iou=0.0,
                 edge=None, label_decay=0.0):
        check_cfg(cfg)
        try:
            self.shown = ShownFilter(confidence_threshold, agnostic_iou, label_decay)
        except ValueError as e:
            raise DemoError(str(e)) from e
        self.stream_options = stream_options(cfg)
        try:
            check_stream_options(**{**self.stream_options, "fps": self.stream_options["fps"] or None})
        except ValueError as e:
            raise DemoError(str(e)) from e
        try:
            self.model = load_model(cfg)
        except (FileNotFoundError, ValueError) as e:  # no such checkpoint, or one that does not fit the config
            raise DemoError(str(e)) from e
        if edge is not None and getattr(edge, "fingerprint", None) != self.model.fingerprint():
            raise DemoError(f"the edge given was not exported from this model (fingerprint "
                            f"{getattr(edge, 'fingerprint', b'').hex() or 'none'}, the model's "
                            f"{self.model.fingerprint().hex()}): export it from the same config and weights")
        if offload_threshold is not None:
            if self.model.edge_detector is None:
                raise DemoError("--offload-threshold needs an edge that detects on its own "
                                "(MODEL.ECCENTRIC.EDGE.DETECTOR True, e.g. configs/FashionDet/dynamic_ecc_vr.yaml)")
            self.model.policy, self.model.threshold = "dynamic", float(offload_threshold)
            if edge is not None:
                edge.policy, edge.threshold = self.model.policy, self.model.threshold
        self.cloud = cloud if cloud is not None else InProcessCloud(self.model)
        self.inputs = InputBuilder.from_config(cfg)
        self.edge = edge if edge is not None else TorchEdge(self.model, self.inputs)
        dataset = cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else "__unused"
        self.class_names = MetadataCatalog.get(dataset).get("thing_classes", None)
        self.stream = self.fps = None

    def start_stream(self, fps=None, **options):
        """A new stream (empty bucket and cache) at ``fps`` (a video's rate; the config's OFFLOAD.FPS wins when set),
        with ``options`` (``budget_kbps``, ``buffer_s``, ``reuse_threshold``, ``keyframe``, ``track_iou``) over the
        config's."""
        opts = {**self.stream_options, **options}
        opts["fps"] = float(opts["fps"] or fps or 0.0)
        try:
            rate_control, reuse = stream_controls(**opts)
        except ValueError as e:
            raise DemoError(str(e)) from e
        self.stream = EdgeStream(self.edge, self._send, None, rate_control, reuse)
        self.shown.reset()
        self.fps = opts["fps"] or None
        return self.stream

    def _send(self, body, output_size):
        answer = self.cloud(body, output_size)
        return {**instances_to_dict(answer["instances"].to("cpu")), "cloud_ms": answer["cloud_ms"]}

    def __call__(self, bgr):
        if self.stream is None:
            self.start_stream()
        self.stream.key = getattr(self.cloud, "key", None)
        r = self.stream(bgr)
        tiles = sent_tiles(r.tiles, r.tile_px, r.input_size, bgr.shape[:2]) if r.tiles is not None else []
        instances = dict_to_instances({**r.detections, "image_size": list(bgr.shape[:2])})
        keep, classes = self.shown(instances.pred_boxes.tensor.numpy(), instances.scores.numpy(),
                                   instances.pred_classes.tolist())
        instances = instances[torch.as_tensor(keep, dtype=torch.long)]
        instances.pred_classes = torch.as_tensor(classes, dtype=torch.long)
        return FrameResult(instances, r.source == "cloud", r.bytes_sent, r.score, r.edge_ms, r.cloud_ms, tiles,
                           r.source, r.rate, r.reused)

    def class_name(self, k):
        return self.class_names[k] if self.class_names and 0 <= k < len(self.class_names) else f"class {k}"


def sent_tiles(tiles, tile_px, image_size, frame_hw):
    """(x0, y0, x1, y1) in frame pixels of each set tile of ``tiles`` (laid at the network input's ``image_size``)."""
    sy, sx = frame_hw[0] / image_size[0], frame_hw[1] / image_size[1]
    return [(int(c * tile_px * sx), int(r * tile_px * sy), int(min((c + 1) * tile_px, image_size[1]) * sx),
             int(min((r + 1) * tile_px, image_size[0]) * sy)) for r, c in zip(*np.nonzero(tiles))]


def human_bytes(n):
    """``n`` bytes as "512 B", "3.4 kB" or "1.2 MB"."""
    for unit in ("B", "kB", "MB"):
        if abs(n) < 1000 or unit == "MB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


class RunLog:
    """The per-frame log (JSONL when ``path`` is given), running totals and the summary."""

    def __init__(self, path=None):
        try:
            self._file = open(path, "w") if path else None
        except OSError as e:
            raise DemoError(f"cannot write the log {path}: {e.strerror}") from e
        self.path = path
        self.frames = self.offloaded = self.bytes = self.detections = 0
        self.reused_frames = self.budget_kept_frames = 0
        self.edge_ms = self.cloud_ms = 0.0

    def add(self, result, predictor, **extra):
        """Count ``result`` and write its record (frame index, offloaded, bytes, ms, detections)."""
        inst = result.instances
        detections = [{"class": predictor.class_name(int(c)), "score": round(float(s), 3),
                       "box": [round(float(v), 1) for v in b]}
                      for b, s, c in zip(inst.pred_boxes.tensor, inst.scores, inst.pred_classes)]
        record = {"frame": self.frames, **extra, "offloaded": result.offloaded, "bytes": result.bytes,
                  "score": round(result.score, 4), "edge_ms": round(result.edge_ms, 2),
                  "cloud_ms": round(result.cloud_ms, 2), "detections": detections}
        if result.tiles:
            record["tiles"] = [list(t) for t in result.tiles]
        if result.source not in ("cloud", "edge"):
            record["source"] = result.source
        if result.rate is not None:
            record["rate"] = result.rate
        if result.reused:
            record["reused"] = result.reused
        if self._file:
            self._file.write(json.dumps(record) + "\n")
        self.frames += 1
        self.offloaded += result.offloaded
        self.reused_frames += bool(result.reused)
        self.budget_kept_frames += result.source in BUDGET_KEPT
        self.bytes += result.bytes
        self.detections += len(detections)
        self.edge_ms += result.edge_ms
        self.cloud_ms += result.cloud_ms
        return record

    def close(self):
        if self._file:
            self._file.close()

    def summary(self, input_bytes=None, fps=None):
        """Frames, bytes sent (total, per frame, per offloaded frame, vs ``input_bytes``; the mean kbit/s at ``fps``),
        offload rate, frames (partly) answered from the reuse cache and kept on the edge by the budget, edge and cloud
        ms per frame, detections per frame."""
        n = max(self.frames, 1)
        return {
            "frames": self.frames, "offloaded_frames": self.offloaded, "offload_rate": self.offloaded / n,
            "bytes_total": self.bytes, "bytes_per_frame": self.bytes / n,
            "bytes_per_offloaded_frame": self.bytes / max(self.offloaded, 1),
            "input_bytes": input_bytes, "bytes_vs_input": self.bytes / input_bytes if input_bytes else None,
            "fps": fps, "kbps": 8 * self.bytes * fps / n / 1000 if fps else None,
            "reused_frames": self.reused_frames, "budget_kept_frames": self.budget_kept_frames,
            "edge_ms_per_frame": self.edge_ms / n, "cloud_ms_per_frame": self.cloud_ms / n,
            "cloud_ms_per_offloaded_frame": self.cloud_ms / max(self.offloaded, 1),
            "detections_per_frame": self.detections / n,
        }


def format_summary(s):
    """The summary as a few readable lines."""
    vs = f" = {s['bytes_vs_input']:.1%} of the input's {human_bytes(s['input_bytes'])}" if s["input_bytes"] else ""
    lines = [
        f"frames       {s['frames']} from {s['input']}",
        f"sent         {human_bytes(s['bytes_total'])} in total{vs}; {human_bytes(s['bytes_per_frame'])} per frame, "
        f"{human_bytes(s['bytes_per_offloaded_frame'])} per offloaded frame",
        f"offloaded    {s['offloaded_frames']}/{s['frames']} frames ({s['offload_rate']:.1%}), "
        f"to the {s['cloud']} cloud",
        f"time         edge {s['edge_ms_per_frame']:.1f} ms + cloud {s['cloud_ms_per_frame']:.1f} ms per frame "
        f"({s['cloud_ms_per_offloaded_frame']:.1f} ms per offloaded frame)",
        f"detections   {s['detections_per_frame']:.2f} per frame (score >= {s['confidence_threshold']}"
        + (f", one label per object at IoU {s['agnostic_iou']:g}" if s.get("agnostic_iou") else "")
        + (f", labels voted over each object's track, decay {s['label_decay']:g})" if s.get("label_decay") else ")"),
    ]
    if s.get("kbps") is not None:
        lines.insert(2, f"bitrate      {s['kbps']:.1f} kbit/s at {s['fps']:g} frames/s")
    if s.get("budget_kbps"):
        lines.append(f"budget       {s['budget_kbps']:g} kbit/s, bucket of {s['buffer_s']:g} s: peak fill "
                     f"{s['bucket_peak_fill']:.1%}; {s['budget_kept_frames']} frames kept on the edge for it")
    if s.get("reuse_threshold") or s.get("track_iou"):
        rules = ([f"change < {s['reuse_threshold']:g}"] if s.get("reuse_threshold") else []) + \
            ([f"objects followed at IoU {s['track_iou']:g}"] if s.get("track_iou") else [])
        lines.append(f"reuse        {s['reused_frames']} frames answered (in part) from the cache ("
                     f"{', '.join(rules)}; keyframe every {s['keyframe']} frames)")
    if s.get("recall") is not None or s.get("precision") is not None:
        def fmt(key):
            ci = s.get(key + "_ci95")
            return "-" if s[key] is None else f"{s[key]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        lines.append(f"accuracy     precision {fmt('precision')}, recall {fmt('recall')}: {s['matched']} of "
                     f"{s['detections']} detections match one of the {s['objects']} boxes of "
                     f"{os.path.basename(s['ground_truth'])} (IoU >= {s['iou']}, same class)")
    if s.get("output"):
        codec = f" ({s['codec']})" if s.get("codec") else ""
        lines.append(f"output       {s['output']}{codec}; log {s['log']}")
    return "\n".join(lines)


def _text(img, text, org, scale, color, background):
    """``text`` with its baseline-left corner at ``org`` on a filled box; returns the box's right edge."""
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = org
    cv2.rectangle(img, (x, y - h - base), (x + w + 4, y + base), background, -1)
    cv2.putText(img, text, (x + 2, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)
    return x + w + 4


def draw_frame(bgr, result, log, predictor):
    """The frame with its boxes and classes, an EDGE/CLOUD badge, this frame's bytes and the running
    totals of ``log`` (which already counts this frame)."""
    vis = bgr.copy()
    if result.tiles:  # the tiles sent to the cloud, shaded
        shade = vis.copy()
        for x0, y0, x1, y1 in result.tiles:
            cv2.rectangle(shade, (x0, y0), (x1 - 1, y1 - 1), _ORANGE, -1)
        vis = cv2.addWeighted(shade, 0.25, vis, 0.75, 0)
        for x0, y0, x1, y1 in result.tiles:
            cv2.rectangle(vis, (x0, y0), (x1 - 1, y1 - 1), _ORANGE, 1)
    scale = max(0.4, min(vis.shape[:2]) / 600)
    line = int(30 * scale)
    inst = result.instances
    for box, score, k in zip(inst.pred_boxes.tensor.tolist(), inst.scores.tolist(), inst.pred_classes.tolist()):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        color = _COLORS[k % len(_COLORS)]
        cv2.rectangle(vis, (x0, y0), (x1, y1), color, max(1, int(2 * scale)))
        label_y = y0 - 3 if y0 > line else y0 + line  # inside the box at the top edge of the frame
        _text(vis, f"{predictor.class_name(k)} {score:.0%}", (x0, label_y), scale * 0.8, _BLACK, color)
    reused = result.source in ("reused", "held")
    badge, color = ("CLOUD", _ORANGE) if result.offloaded else ("CACHE", _BLUE) if reused else ("EDGE", _GREEN)
    x = _text(vis, badge, (4, line), scale * 1.2, _WHITE, color)
    budget = " (budget)" if result.source in BUDGET_KEPT else ""
    sent = (f"sent {human_bytes(result.bytes)}" if result.offloaded
            else ("0 B sent: the cloud's last answer" if reused else "0 B sent: answered on the edge") + budget)
    if result.tiles:
        sent += f" ({len(result.tiles)} tiles" + (f", {result.reused} from the cache)" if result.reused else ")")
    _text(vis, sent, (x + 6, line), scale, _WHITE, _BLACK)
    totals = (f"frame {log.frames - 1}  total {human_bytes(log.bytes)}  "
              f"cloud {log.offloaded}/{log.frames} ({log.offloaded / log.frames:.0%})")
    _text(vis, totals, (4, vis.shape[0] - line // 3), scale, _WHITE, _BLACK)
    return vis


def _makedirs(folder):
    try:
        os.makedirs(folder or ".", exist_ok=True)
    except OSError as e:
        raise DemoError(f"cannot write to {folder}: {e.strerror}") from e


def _can_show():
    if os.name == "posix" and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise DemoError("no display to show the frames on: pass --output")


def _show(vis, wait_ms):
    """Show a frame; False when the user pressed Esc or q."""
    cv2.imshow("eccentric_det", vis)
    return cv2.waitKey(wait_ms) not in (27, ord("q"))


def _finish(summary, predictor, log, output, codec, summary_path):
    summary.update(cloud=predictor.cloud.name, confidence_threshold=predictor.shown.confidence_threshold,
                   agnostic_iou=predictor.shown.agnostic_iou, label_decay=predictor.shown.vote.decay, output=output,
                   codec=codec, log=log.path)
    stream = predictor.stream
    if stream is not None and stream.rate_control is not None:  # budget_kbps, mean_kbps, bucket_peak_fill, ...
        summary.update(stream.summary())
    if stream is not None and stream.reuse is not None:
        summary.update(reuse_threshold=stream.reuse.threshold, keyframe=stream.reuse.keyframe,
                       track_iou=stream.reuse.track_iou)
    if summary_path:
        with open(summary_path, "w") as f:
            json.dump(summary, f, indent=1)
    return summary


def run_on_video(predictor, source, output=None):
    """Run ``predictor`` on every frame of ``source`` (a video path or a webcam index). With ``output``
    (a folder, or a file name ending in .mp4/.avi/.mkv/.mov) write the annotated video, the JSONL log
    and the summary json next to it; without, show the frames. Returns the summary."""
    video = VideoSource(source)
    writer = codec = out_path = log_path = summary_path = None
    if output:
        stem = "webcam" if isinstance(source, int) else os.path.splitext(os.path.basename(video.name))[0]
        out_path = output if output.lower().endswith(VIDEO_EXTS) else os.path.join(output, stem + ".mp4")
        base = os.path.splitext(out_path)[0]
        log_path, summary_path = base + ".jsonl", base + ".summary.json"
        writer, codec = open_writer(out_path, video.fps, video.size)
    else:
        _can_show()
    log = RunLog(log_path)
    predictor.start_stream(video.fps)
    truth = None if isinstance(source, int) else ground_truth_of(video.name)
    accuracy = BoxAccuracy(truth) if truth else None
    try:
        for frame in tqdm(video, total=video.frame_count, unit="frame"):
            result = predictor(frame)
            record = log.add(result, predictor)
            if accuracy is not None:
                inst = result.instances
                accuracy.add(record["frame"], inst.pred_boxes.tensor.numpy(), inst.scores.numpy(),
                             [predictor.class_name(int(c)) for c in inst.pred_classes])
            vis = draw_frame(frame, result, log, predictor)
            if writer is not None:
                writer.write(vis)
            elif not _show(vis, 1):
                break
    finally:
        log.close()
        if writer is not None:
            writer.release()
    summary = log.summary(None if isinstance(source, int) else os.path.getsize(video.name), predictor.fps)
    summary["input"] = video.name
    if accuracy is not None:  # against the video's own boxes, at the predictor's confidence threshold
        summary.update(accuracy.summary())
    return _finish(summary, predictor, log, out_path, codec, summary_path)


def expand_inputs(patterns):
    """Image paths from paths and globs (Detectron2's ``--input``); :class:`DemoError` if one matches nothing."""
    paths = []
    for p in patterns:
        found = sorted(glob.glob(os.path.expanduser(p))) if glob.has_magic(p) else [p]
        if not found or not os.path.isfile(found[0]):
            raise DemoError(f"no image found at {p!r}")
        paths += found
    return paths


def run_on_images(predictor, patterns, output=None):
    """Run ``predictor`` on images (paths or globs). With ``output`` (a folder, or an image file name
    for a single image) write the annotated images, the JSONL log and the summary json (``images.*``
    in the folder); without, show them. Returns the summary."""
    paths = expand_inputs(patterns)
    log_path = summary_path = None
    single = output and len(paths) == 1 and output.lower().endswith(IMAGE_EXTS)
    if output:
        _makedirs(os.path.dirname(output) if single else output)
        base = os.path.splitext(output)[0] if single else os.path.join(output, "images")
        log_path, summary_path = base + ".jsonl", base + ".summary.json"
    else:
        _can_show()
    log = RunLog(log_path)
    predictor.start_stream()  # images are frames of one stream, at OFFLOAD.FPS
    try:
        for path in tqdm(paths, unit="image"):
            img = cv2.imread(path, cv2.IMREAD_COLOR)
            if img is None:
                raise DemoError(f"cannot read image {path!r}")
            result = predictor(img)
            log.add(result, predictor, file=path)
            vis = draw_frame(img, result, log, predictor)
            if not output:
                if not _show(vis, 0):
                    break
                continue
            dest = output if single else os.path.join(output, os.path.basename(path))
            if not cv2.imwrite(dest, vis):
                raise DemoError(f"cannot write {dest}")
    finally:
        log.close()
    summary = log.summary(sum(os.path.getsize(p) for p in paths), predictor.fps)
    summary["input"] = f"{len(paths)} images"
    return _finish(summary, predictor, log, output, None, summary_path)
