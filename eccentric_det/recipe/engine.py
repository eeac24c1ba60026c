"""The recipe's stamp and resume engine: a stage is a list of subprocess steps with the files it reads and writes;
it is skipped when its stamp (``<stage folder>/stage.json``: the commands, a hash of each merged config, and size,
mtime and SHA-256 of its inputs and outputs) matches, resumed after its finished steps when it was interrupted with
the same commands and inputs (a training through Detectron2's ``--resume``), and otherwise run from an empty folder.
What the stages are is :mod:`eccentric_det.recipe.plan`'s business."""
import hashlib
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from .names import STAGES, TITLES, TRAINING_STAGES


class RecipeError(Exception):
    """A problem the user can fix, reported without a traceback (exit status 2)."""


# ------------------------------------------------------------------------------------------------ stamps
_HASHES = {}  # (path, size, mtime_ns) -> sha256: each file is hashed once per process


def file_signature(path, known=None):
    """``{"size", "mtime_ns", "sha256"}`` of a file, or None when it does not exist. ``known``: an earlier signature
    of the same path; when size and mtime are unchanged its hash is reused instead of reading the file again."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if known and (known.get("size"), known.get("mtime_ns")) == key[1:] and known.get("sha256"):
        _HASHES.setdefault(key, known["sha256"])
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": _HASHES[key]}


def _same_file(now, then):
    return now is not None and then is not None and (now["size"], now["sha256"]) == (then["size"], then["sha256"])


@dataclass
class Step:
    """One subprocess of a stage. ``command`` starts with "python" (run as this interpreter), usually
    ``python -m MODULE`` (:func:`eccentric_det.recipe.names.tool`)."""

    command: List[str]
    train_dir: str = ""  # a Detectron2 training: its OUTPUT_DIR (progress from metrics.json; --resume)
    max_iter: int = 0
    points_dir: str = ""  # a tools/pareto.py sweep: its --output (progress from its plan.json and finished points)
    fallback: Optional["Step"] = None  # run instead when this step fails and ``fallback_when()`` gives a reason
    fallback_when: Optional[Callable[[], str]] = None


@dataclass
class Stage:
    """A resumable stage: its steps, the files it reads (inputs) and writes (outputs), its stamp's folder."""

    key: str
    index: int
    out_dir: str
    steps: List[Step] = field(default_factory=list)
    inputs: List[str] = field(default_factory=list)
    outputs: List[str] = field(default_factory=list)
    configs: List[tuple] = field(default_factory=list)  # (config file, overrides) pairs whose merge is stamped
    notes: List[str] = field(default_factory=list)
    run: Optional[Callable] = None  # an in-process stage (the report) instead of steps
    finish: Optional[Callable] = None  # called after the steps with the stage: what it adds to the stamp
    identity_extra: dict = field(default_factory=dict)  # what else the stamp must match (the report's budget)
    name: str = ""  # the title when the stage is not its usual one (--teacher-trunk's stage 2)

    @property
    def title(self):
        return self.name or TITLES[self.key]

    @property
    def label(self):
        return f"[{self.index}/{len(STAGES)}] {self.title}"

    @property
    def stamp_path(self):
        return os.path.join(self.out_dir, "stage.json")


def config_hash(configs):
    """SHA-256 of the merged configs (file + overrides) of a stage: an edited config file (or one of its _BASE_
    files) changes it."""
    from ..tasks import get_eccentric_cfg

    digest = hashlib.sha256()
    for config_file, opts in configs:
        digest.update(get_eccentric_cfg(config_file, list(opts)).dump().encode())
    return digest.hexdigest()


def stage_identity(stage):
    """What a stage's stamp must match besides its inputs: its commands, merged configs and extras."""
    return {"commands": [s.command for s in stage.steps], "config": config_hash(stage.configs) if stage.configs else "",
            **stage.identity_extra}


def read_stamp(stage):
    try:
        with open(stage.stamp_path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def stamp_status(stage, identity=None):
    """``(status, reason, stamp)``: "skip" (outputs exist and the stamp matches), "resume" (interrupted with the same
    commands and inputs) or "run"."""
    stamp = read_stamp(stage)
    if stamp is None:
        return "run", "no stamp", None
    identity = stage_identity(stage) if identity is None else identity
    for key, value in identity.items():
        if stamp.get(key) != value:
            return "run", ("its commands changed" if key == "commands" else f"its {key} changed"), stamp
    known = stamp.get("inputs", {})
    if set(known) != set(stage.inputs):
        return "run", "its inputs changed", stamp
    for path in stage.inputs:
        if not _same_file(file_signature(path, known.get(path)), known.get(path)):
            return "run", f"input {path} changed", stamp
    if stamp.get("status") != "done":
        return "resume", "interrupted", stamp
    done = stamp.get("outputs", {})
    for path in stage.outputs:
        now = file_signature(path, done.get(path))
        if now is None:
            return "run", f"output {path} is missing", stamp
        if not _same_file(now, done.get(path)):
            return "run", f"output {path} changed", stamp
    return "skip", "outputs match", stamp


def write_stamp(stage, identity, inputs, status, done_steps=(), **extra):
    """Write the stage's stamp (atomically): identity, input signatures, status, finished steps, and when done the
    output signatures."""
    os.makedirs(stage.out_dir, exist_ok=True)
    stamp = {"stage": stage.key, "status": status, **identity, "inputs": inputs, "done_steps": list(done_steps),
             **extra}
    if status == "done":
        stamp["outputs"] = {p: file_signature(p) for p in stage.outputs}
    tmp = stage.stamp_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(stamp, f, indent=1)
    os.replace(tmp, stage.stamp_path)
    return stamp


# ------------------------------------------------------------------------------------------------ running
def _executable(command):
    return [sys.executable if i == 0 and c == "python" else c for i, c in enumerate(command)]


def _program_end(command):
    """Where a command's own arguments start: after ``python -m MODULE`` / ``python -c CODE`` or ``python FILE``."""
    return 3 if len(command) > 2 and command[1] in ("-m", "-c") else 2


def _metrics_rows(train_dir, tail=None):
    """The rows of a training's OUTPUT_DIR/metrics.json (its last ``tail`` bytes only, when given)."""
    path = os.path.join(train_dir, "metrics.json")
    try:
        with open(path, "rb") as f:
            if tail:
                f.seek(max(0, os.path.getsize(path) - tail))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return []
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def last_iteration(train_dir):
    """The last iteration (0-based) a training wrote to OUTPUT_DIR/metrics.json, or -1."""
    for row in reversed(_metrics_rows(train_dir, tail=8192)):
        try:
            return int(row["iteration"])
        except (KeyError, TypeError, ValueError):
            continue
    return -1


def _iterations_done(train_dir, since):
    """The iterations a training has done by its OUTPUT_DIR/metrics.json, counted only once the file was written at
    or after ``since`` (seconds since the epoch): rows of an earlier run are not this run's progress. 0 before."""
    try:
        if os.path.getmtime(os.path.join(train_dir, "metrics.json")) < since:
            return 0
    except OSError:
        return 0
    return last_iteration(train_dir) + 1


def seconds_per_iteration(train_dir):
    """The median seconds per iteration a training measured (Detectron2's ``time`` in OUTPUT_DIR/metrics.json), or
    None when it measured none."""
    times = [row["time"] for row in _metrics_rows(train_dir) if isinstance(row.get("time"), (int, float))]
    return statistics.median(times) if times else None


TIMED_ITERATIONS = 5  # a timing run (--estimate): Detectron2's IterationTimer times the 3 after 2 warm-up ones


def time_training(command, train_dir, iterations=TIMED_ITERATIONS):
    """Run a training ``command`` of ``iterations`` iterations (its SOLVER.MAX_ITER) writing to ``train_dir`` (its
    OUTPUT_DIR), its output to ``train_dir``/timing.log. Returns ``(seconds per iteration, seconds besides)``: the
    median Detectron2 measured (metrics.json's ``time``: past its warm-up, hooks not included) and the rest of the
    wall time (start-up, warm-up, the final save). Raises :class:`RecipeError` with the end of the log when the run
    fails."""
    log = os.path.join(train_dir, "timing.log")
    os.makedirs(train_dir, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(_executable(command), stdout=f, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    per_iteration = seconds_per_iteration(train_dir)
    if rc or per_iteration is None:
        why = f"exit status {rc}" if rc else "it measured no iteration"
        raise RecipeError(f"its timing run failed ({why}); the end of its log:\n{tail(log, 10)}")
    return per_iteration, max(0.0, wall - iterations * per_iteration)


def _points_done(folder, since):
    """``(points evaluated, points planned)`` of a tools/pareto.py sweep writing to ``folder`` since ``since``
    (seconds since the epoch): its plan.json names each point's folder, where the point's eccentric_metrics.json
    appears once it is evaluated."""
    plan = os.path.join(folder, "plan.json")
    try:
        if os.path.getmtime(plan) < since:
            return 0, 0
        with open(plan) as f:
            points = json.load(f)["points"]
    except (OSError, ValueError, KeyError, TypeError):
        return 0, 0
    done = 0
    for p in points:
        try:
            done += os.path.getmtime(os.path.join(p["output_dir"], "eccentric_metrics.json")) >= since
        except (OSError, KeyError, TypeError):
            pass
    return done, len(points)


def step_progress(step, since):
    """``(done, total)`` of a step running since ``since``, from the files it writes: a training's iterations
    (metrics.json), a sweep's evaluated points (its plan.json and their folders). ``total`` is None while unknown."""
    if step.train_dir:
        return _iterations_done(step.train_dir, since), step.max_iter
    done, total = _points_done(step.points_dir, since)
    return done, total or None


class ProgressBar:
    """A step's tqdm bar that says "starting" until the step reports its first progress (a training loads its model,
    data and weights first, for seconds to minutes), then is timed from there with ``smoothing=0``: its rate and ETA
    are the mean over what was done since that first report, not diluted by the start-up. ``done``: what a resumed
    step had done before (the bar starts there)."""

    def __init__(self, label, unit, total=None, done=0):
        from tqdm import tqdm

        self._tqdm, self.label, self.unit, self.total, self.done = tqdm, label, unit, total, done
        self.bar = tqdm(desc=label, bar_format="{desc}: starting ({elapsed})", leave=False, file=sys.stderr,
                        dynamic_ncols=True)
        self.started = False

    def update(self, done, total=None):
        """Show ``done`` of ``total`` (None: the total known before)."""
        self.total = total or self.total
        if not self.started:
            if done <= self.done:
                self.bar.refresh()  # the elapsed start-up time
                return
            self.bar.close()
            self.bar = self._tqdm(total=self.total, initial=done, desc=self.label, unit=self.unit, smoothing=0,
                                  file=sys.stderr, dynamic_ncols=True)
            self.started = True
            return
        if self.total != self.bar.total:
            self.bar.total = self.total
        self.bar.update(max(0, done - self.bar.n))

    def close(self, completed=False):
        """Close the bar; ``completed``: the step ended well, so the bar is filled."""
        if completed and self.total:
            self.update(self.total)
        self.bar.close()


def run_step(step, log_path, label, resume=False, poll=0.5):
    """Run one step, its output appended to ``log_path``, with a :class:`ProgressBar` for trainings (iterations from
    metrics.json) and sweeps (operating points evaluated). Returns the exit status."""
    command = list(step.command)
    if resume:
        command.insert(_program_end(command), "--resume")
    with open(log_path, "a") as log:
        log.write(f"$ {shlex.join(command)}\n")
        log.flush()
        since = time.time() - 1.0  # a file system's clock may lag a little
        proc = subprocess.Popen(_executable(command), stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
        bar = None
        if step.train_dir:
            bar = ProgressBar(label, "it", step.max_iter, last_iteration(step.train_dir) + 1 if resume else 0)
        elif step.points_dir:
            bar = ProgressBar(label, "point")
        try:
            while proc.poll() is None:
                time.sleep(poll)
                if bar is not None:
                    bar.update(*step_progress(step, since))
        except BaseException:
            proc.terminate()
            proc.wait()
            raise
        finally:
            if bar is not None:
                bar.close(completed=proc.returncode == 0)
    return proc.returncode


def tail(path, lines=25):
    """The last ``lines`` lines of a (log) file, or "" when it cannot be read."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def log_path(stage, i, step):
    """Where step ``i`` of a stage logs: ``<stage folder>/<i + 1>_<program>.log``."""
    command = step.command
    if len(command) > 2 and command[1] == "-m":
        program = command[2].rpartition(".")[2]
    else:
        program = os.path.splitext(os.path.basename(command[1]))[0] if len(command) > 1 else "step"
    return os.path.join(stage.out_dir, f"{i + 1}_{program}.log")


def execute_stage(stage, say=print):
    """Run a stage unless its stamp matches: skip, resume or run from an empty folder. Returns the status
    ("skipped", "resumed" or "ran")."""
    identity = stage_identity(stage)
    status, reason, stamp = stamp_status(stage, identity)
    if status == "skip":
        say(f"{stage.label}: skipped ({reason})")
        return "skipped"
    missing = [p for p in stage.inputs if not os.path.exists(p)]
    if missing:
        raise RecipeError(f"{stage.label}: its input {missing[0]} does not exist (an earlier stage did not write it)")
    done_steps = set(stamp.get("done_steps", [])) if status == "resume" else set()
    if status == "run":
        if os.path.isdir(stage.out_dir):
            shutil.rmtree(stage.out_dir)
        for path in stage.outputs:
            if os.path.exists(path):
                os.remove(path)
    inputs = {p: file_signature(p, (stamp or {}).get("inputs", {}).get(p)) for p in stage.inputs}
    say(f"{stage.label}: {'resuming' if status == 'resume' else 'running'} ({reason})")
    start = time.perf_counter()
    write_stamp(stage, identity, inputs, "running", done_steps)
    extra = {}
    if stage.run is not None:
        stage.run(stage)
    for i, step in enumerate(stage.steps):
        if i in done_steps:
            say(f"    step {i + 1} of {len(stage.steps)} done before: "
                f"{shlex.join(step.command[:_program_end(step.command)])} ...")
            continue
        resume = bool(step.train_dir) and os.path.isfile(os.path.join(step.train_dir, "last_checkpoint"))
        if resume:
            say(f"    resuming the training from {step.train_dir} (--resume)")
        log = log_path(stage, i, step)
        rc = run_step(step, log, stage.label, resume=resume)
        why = step.fallback_when() if rc and step.fallback is not None and step.fallback_when else ""
        if why:
            say(f"    the step failed ({why}); falling back to: {shlex.join(step.fallback.command)}")
            extra["fallback"] = True
            rc = run_step(step.fallback, log, stage.label)
        if rc:
            raise RecipeError(f"{stage.label} failed (exit status {rc}). The end of {log}:\n{tail(log)}\nFix the "
                              f"cause and run the same command again: finished steps are kept, an interrupted "
                              f"training resumes from its last checkpoint.")
        done_steps.add(i)
        write_stamp(stage, identity, inputs, "running", sorted(done_steps), **extra)
    if stage.finish is not None:
        extra.update(stage.finish(stage) or {})
    seconds = round(time.perf_counter() - start, 1)
    write_stamp(stage, identity, inputs, "done", sorted(done_steps), seconds=seconds, **extra)
    say(f"{stage.label}: done in {duration(seconds)}")
    return "resumed" if status == "resume" else "ran"


def remove_intermediate(stage, say=print):
    """Once a training stage is done (its final export written and stamped), remove its intermediate checkpoints
    (``model_0*.pth``; ``--keep-intermediate`` keeps them): only an interrupted training resumes from them. Returns
    the names removed."""
    if stage.key not in TRAINING_STAGES or (read_stamp(stage) or {}).get("status") != "done":
        return []
    folder = stage.out_dir
    names = sorted(n for n in (os.listdir(folder) if os.path.isdir(folder) else [])
                   if re.fullmatch(r"model_0\d*\.pth", n))
    if not names:
        return []
    size = sum(os.path.getsize(os.path.join(folder, n)) for n in names)
    for name in names:
        os.remove(os.path.join(folder, name))
    say(f"    removed {len(names)} intermediate checkpoint{'s' * (len(names) > 1)} of {folder} "
        f"({size / 2 ** 20:.1f} MB; --keep-intermediate keeps them)")
    return names


def duration(seconds):
    """``"1h05m"``, ``"3m07s"`` or ``"42s"``."""
    minutes, s = divmod(int(round(seconds)), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else (f"{m}m{s:02d}s" if m else f"{s}s")
