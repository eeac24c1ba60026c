"""The command-line programs' logging: Detectron2's ``setup_logger``, safe to call again in one process."""
import logging
import sys

from detectron2.utils.logger import setup_logger


def setup_logging(output=None, distributed_rank=0, names=("detectron2", "eccentric_det")):
    """Detectron2's ``setup_logger`` for each logger of ``names`` (``output``: a log file or folder, as there).

    Detectron2 caches the call, so a program's ``main`` run a second time in one process (a test, a notebook) gets
    the console handler of the first run; when ``sys.stdout`` was replaced and closed in between, that handler is
    pointed at the current one instead of failing on every record."""
    for name in names:
        logger = setup_logger(output, distributed_rank, name=name)
        for handler in logger.handlers:
            stream = getattr(handler, "stream", None)
            if type(handler) is logging.StreamHandler and getattr(stream, "closed", False):
                with handler.lock:  # not setStream: it flushes the closed stream first
                    handler.stream = sys.stdout
