"""One logger, several sinks: TensorBoard scalars and the console (a bar or plain lines).

Algorithms never log; they return metrics dicts keyed by TensorBoard tag (`losses/policy_loss`),
and the runner hands them here with the environment step as the x-axis.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm


@contextmanager
def local_files_only() -> Iterator[None]:
    """Imports inside it find no boto3 or fsspec, unless something imported them already.
    TensorBoard's file layer imports both where they are installed (the ray and minari extras bring
    them), for s3:// and other remote paths: 0.1 s of every run, whose folders are local."""
    absent = [name for name in ("boto3", "botocore", "fsspec") if name not in sys.modules]
    sys.modules.update(dict.fromkeys(absent))  # None in sys.modules: `import name` raises ImportError
    try:
        yield
    finally:
        for name in absent:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]


with local_files_only():
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

from rlrun.events import events_dir

log = logging.getLogger("rlrun")

EVAL_TAG = "eval/episodic_return"


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The run's settings as flat `key: scalar` pairs for TensorBoard's HParams tab."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            key = prefix[:-1]
            out[key] = node if isinstance(node, (int, float, str, bool)) else str(node)

    container = OmegaConf.to_container(cfg, resolve=True)
    for group in ("env", "algo"):
        walk(container.get(group, {}), f"{group}.")
    for key in ("seed", "total_timesteps"):
        out[key] = container[key]
    return out


class Logger:
    def __init__(self, run_dir: Path, cfg: DictConfig, start_step: int = 0, unit: str = "env steps"):
        # hide what an earlier attempt in this folder logged after start_step: it is logged again
        self.writer = SummaryWriter(str(events_dir(run_dir)), purge_step=start_step + 1)
        self.total = int(cfg.total_timesteps)
        self.every_s = float(cfg.log.every_s)
        mode = cfg.log.progress
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode = mode
        self.unit = unit
        self.bar = None
        if mode == "bar":  # its rate (tqdm's own, in `unit`/s) is the one speed shown; it stops at the budget
            self.bar = tqdm(total=self.total, initial=min(start_step, self.total), unit=" " + unit, dynamic_ncols=True)
        self.latest: dict[str, float] = {}
        self.last_line = time.perf_counter()
        if start_step == 0:
            self.writer.add_text("config", "```\n" + OmegaConf.to_yaml(cfg, resolve=True) + "\n```", 0)
            # no experiment summary: TensorBoard shows the first one it finds for all runs, which drops the
            # keys of other algorithms in a sweep; without one it builds the table from every run's session
            _, session_start, session_end = hparams(flat_hparams(cfg), {EVAL_TAG: float("nan")})
            for summary in (session_start, session_end):
                self.writer.file_writer.add_summary(summary)

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Scalars as scalars; an [H, W, 3] uint8 array as an image."""
        for tag, value in metrics.items():
            if isinstance(value, np.ndarray) and value.ndim == 3:
                self.writer.add_image(tag, value, step, dataformats="HWC")
            else:
                self.writer.add_scalar(tag, value, step)
                self.latest[tag] = float(value)

    def video(self, tag: str, step: int, clip: np.ndarray, fps: int) -> None:
        """A [1, T, 3, H, W] uint8 clip (an animated image in TensorBoard; needs moviepy)."""
        self.writer.add_video(tag, clip, step, fps=fps)

    def flush(self) -> None:
        """Everything logged so far onto disk (before a checkpoint, so a kill loses no logged point)."""
        self.writer.flush()

    def shown(self) -> dict[str, str]:
        """The latest training return and eval return, and without a bar the training speed."""
        shown = {"return": self.latest.get("charts/episodic_return"), "eval": self.latest.get(EVAL_TAG)}
        if self.bar is None:
            shown["steps/s"] = self.latest.get("charts/SPS")
        return {k: f"{v:.4g}" for k, v in shown.items() if v is not None}

    def progress(self, step: int) -> None:
        """Move the bar, or print a plain line every `log.every_s` seconds. The bar stops at the
        budget: an algorithm whose last batch goes past it says by how much in its last line."""
        if self.bar is not None:
            self.bar.update(min(step, self.total) - self.bar.n)
            self.bar.set_postfix(self.shown(), refresh=False)
        elif self.mode == "lines" and time.perf_counter() - self.last_line >= self.every_s:
            self.last_line = time.perf_counter()
            shown = self.shown().items()
            log.info("%d/%d %s | %s", step, self.total, self.unit, " | ".join(f"{k} {v}" for k, v in shown))

    def close(self) -> None:
        """The bar's last state shows the final eval (logged after the loop's last `progress`)."""
        if self.bar is not None:
            self.bar.set_postfix(self.shown(), refresh=False)
            self.bar.close()
        self.writer.close()
