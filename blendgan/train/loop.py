"""The loop both trainers run: steps, metric means and logging (``log.jsonl``, TensorBoard),
the progress bar, periodic checkpoints, and stopping on Ctrl-C or SIGTERM.

A trainer subclasses :class:`TrainingLoop` and fills in one step, its log record, its
checkpoint and its clean-up; :meth:`TrainingLoop.run` does the rest, the same way for both:

* every ``log_every`` steps (and at the last) the metric means since the last line, averaged
  over the processes, go to ``log.jsonl`` and the progress bar;
* every ``save_every`` steps, at the last one, and when a stop was asked for, every process
  takes part in writing a checkpoint;
* the first Ctrl-C or SIGTERM finishes the step in progress, saves and returns 130; a second
  Ctrl-C quits at once.
"""
from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Callable

import torch

from .. import io
from ..runtime import DistEnv
from .config import RunConfig, save as save_config
from .checkpoints import CHECKPOINT_DIR, CheckpointWriter
from .collectives import any_process
from .monitor import MetricLogger, MetricMeans, RateMeter

log = logging.getLogger("blendgan")

STOPPED = 130  # the exit status of a run stopped by a signal (128 + SIGINT)


class StopRequest:
    """Turns Ctrl-C (SIGINT) and SIGTERM into a flag checked between steps.

    The first signal asks the loop to finish the current step, save a checkpoint and exit;
    a second Ctrl-C raises ``KeyboardInterrupt`` at once.  Handlers are installed only in the
    main thread and restored on exit.
    """

    def __init__(self):
        self.requested = False
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("%s received: finishing this step, saving a checkpoint, then stopping "
                    "(Ctrl-C again to quit at once)", signal.Signals(signum).name)

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    self._previous[sig] = signal.signal(sig, self._handle)
                except (ValueError, OSError):
                    pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class TrainingLoop:
    """One process of a training run.

    Subclasses set :attr:`step` (when resuming), :attr:`total` (steps of the run) and
    :attr:`global_batch` (images per step over all processes), and implement
    :meth:`train_step`, :meth:`checkpoint` and :meth:`close`; the other hooks are optional.
    ``callback(loop)``, if given, runs after every step (tests use it to interrupt).
    """

    def __init__(self, config: RunConfig, env: DistEnv,
                 callback: Callable[["TrainingLoop"], None] | None = None):
        self.config, self.env, self.callback = config, env, callback
        self.outdir = Path(config.outdir)
        if env.main:
            self.outdir.mkdir(parents=True, exist_ok=True)
            for folder in (self.outdir, self.outdir / CHECKPOINT_DIR, self.outdir / "samples"):
                io.sweep_temporaries(folder)  # what a killed run left half-written
        self.writer = CheckpointWriter(self.outdir, config.keep)
        self.step = 0
        self.total = 0
        self.global_batch = 1

    # -- hooks --------------------------------------------------------------------------------------
    def train_step(self) -> dict[str, torch.Tensor]:
        """Run one step; returns its metrics (scalar tensors) by name."""
        raise NotImplementedError

    def checkpoint(self) -> Path | None:
        """Write a checkpoint of the current step (every process calls it); its path on the main one."""
        raise NotImplementedError

    def close(self) -> None:
        """Release data loaders and threads (also after an error)."""

    def before_loop(self) -> None:
        """Runs once before the first step of this invocation."""

    def after_step(self, metrics: dict[str, torch.Tensor]) -> None:
        """Runs after every step, once it is counted and logged."""

    def log_record(self, means: dict[str, float], rate: float) -> dict:
        """The ``log.jsonl`` line of this step from the metric means and the rate in kimg/s."""
        return {"step": self.step, "kimg": self.kimg, **means, "kimg_per_s": rate}

    def check_record(self, means: dict[str, float]) -> None:
        """Raise :class:`~blendgan.errors.TrainError` when the logged means show the run has failed."""

    def progress(self, record: dict, rate: float) -> str:
        """The progress bar's postfix for a logged ``record``."""
        return ""

    def position(self) -> str:
        """Where the run is, for the last message: ``step N``."""
        return f"step {self.step}"

    @property
    def kimg(self) -> float:
        return self.step * self.global_batch / 1000

    # -- the loop -----------------------------------------------------------------------------------
    def run(self) -> int:
        """Train to :attr:`total` steps; returns the exit status (130 when stopped by a signal)."""
        c, env = self.config, self.env
        if env.main:
            save_config(c, self.outdir)
        logger = MetricLogger(self.outdir, env.main, self.step, c.tensorboard)
        bar = None
        if env.main and not c.quiet:
            from tqdm import tqdm
            bar = tqdm(total=self.total, initial=self.step, unit="step", dynamic_ncols=True)
        meter = RateMeter()
        means = MetricMeans()
        status, last_saved = 0, self.step
        self.before_loop()
        stop = StopRequest()
        try:
            with stop:
                while self.step < self.total:
                    metrics = self.train_step()
                    self.step += 1
                    meter.add(self.global_batch)
                    means.add(metrics)
                    if self.step % c.log_every == 0 or self.step == self.total:
                        logged = means.pop(env)
                        rate = meter.rate()
                        record = self.log_record(logged, rate)
                        logger.write(record)
                        if bar is not None:
                            bar.set_postfix_str(self.progress(record, rate))
                        self.check_record(logged)
                    if bar is not None:
                        bar.update(1)
                    self.after_step(metrics)
                    if self.callback is not None:
                        self.callback(self)
                    stopping = any_process(stop.requested, env)
                    if self.step % c.save_every == 0 or self.step == self.total or stopping:
                        self.checkpoint()
                        last_saved = self.step
                    if stopping:
                        status = STOPPED
                        break
        except KeyboardInterrupt:
            # raised mid-step without our handler (not the main thread): the step in progress may be
            # partly applied; save what there is (one process only: no collectives).  A second
            # Ctrl-C after the first means "quit now": nothing is saved.
            if not env.distributed and self.step != last_saved and not stop.requested:
                self.checkpoint()
            status = STOPPED
        finally:
            if bar is not None:
                bar.close()
            logger.close()
            self.close()
        if env.main:
            log.info("%s at %s: %s", "stopped" if status else "done", self.position(), self.writer.latest)
        return status
