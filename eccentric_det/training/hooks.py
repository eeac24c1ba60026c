"""Detectron2 training hooks of eccentric_det: stopping a run at its plateau or at a time budget."""
import json
import logging
import os
import time

from detectron2.engine import HookBase
from detectron2.utils import comm

from ..evaluation.curves import plateau

logger = logging.getLogger(__name__)


class EarlyStop(BaseException):
    """Raised by :class:`StopAtPlateau` to end the training loop (a BaseException: Detectron2's loop logs every
    Exception as a failure); ``tools/train_net.py``'s trainer catches it."""


class StopAtPlateau(HookBase):
    """Ends training when the learning curve of ``metric`` (the EvalHook's results on ``DATASETS.TEST``: a held-out
    split of the training images, never val) is flat by :func:`eccentric_det.evaluation.curves.plateau` with
    ``min_gain`` (and at least ``min_points`` evaluations), or when ``max_minutes`` of training have passed. It saves
    ``model_final`` first and writes ``OUTPUT_DIR/stop.json`` (why, at which iteration, the curve). Place it after
    the EvalHook."""

    def __init__(self, checkpointer, output_dir, metric="bbox/AP", stop_at_plateau=True, min_gain=0.3, min_points=4,
                 max_minutes=0.0):
        self.checkpointer, self.output_dir, self.metric = checkpointer, output_dir, metric
        self.stop_at_plateau, self.min_gain, self.min_points = stop_at_plateau, min_gain, min_points
        self.max_seconds = 60.0 * max_minutes
        self.curve, self._start = [], None

    @classmethod
    def from_config(cls, cfg, checkpointer):
        P = cfg.SOLVER.PLATEAU
        return cls(checkpointer, cfg.OUTPUT_DIR, P.METRIC, P.STOP, P.MIN_GAIN, P.MIN_POINTS, cfg.SOLVER.MAX_MINUTES)

    def before_train(self):
        self._start = time.perf_counter()

    def after_step(self):
        done = self.trainer.iter + 1
        if done >= self.trainer.max_iter:
            return
        self._record(done)
        reason, verdict = None, plateau(self.curve, self.min_gain)
        if self.stop_at_plateau and len(self.curve) >= self.min_points and verdict["flat"] and \
                self.curve[-1][0] == done:
            reason = "plateau"
        elif self.max_seconds and time.perf_counter() - self._start > self.max_seconds:
            reason = "max_minutes"
        reason = comm.all_gather(reason)[0]  # the main process decides for every worker
        if not reason:
            return
        logger.info("Stopping at iteration %d of %d: %s (%s)", done, self.trainer.max_iter, reason, verdict)
        self.checkpointer.save("model_final", iteration=self.trainer.iter)
        self._write(reason, done)
        raise EarlyStop(reason)

    def after_train(self):
        """A run that reached SOLVER.MAX_ITER: its stop.json, with the EvalHook's last evaluation."""
        if self.trainer.iter >= self.trainer.max_iter:
            self._record(self.trainer.max_iter)
            self._write("max_iter", self.trainer.max_iter)

    def _record(self, done):
        """Append the EvalHook's result of this iteration, if it evaluated."""
        latest = self.trainer.storage.latest().get(self.metric)
        if latest is not None and latest[1] >= done - 1 and (not self.curve or self.curve[-1][0] != done):
            self.curve.append((done, float(latest[0])))

    def _write(self, reason, done):
        if comm.is_main_process():
            with open(os.path.join(self.output_dir, "stop.json"), "w") as f:
                json.dump({"reason": reason, "iteration": done, "max_iter": self.trainer.max_iter,
                           "metric": self.metric, "curve": self.curve,
                           "plateau": plateau(self.curve, self.min_gain)}, f, indent=1)
