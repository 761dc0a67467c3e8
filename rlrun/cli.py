"""The `rlrun` command: Hydra composes the config, `rlrun.runner` trains."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from rlrun import sweep
from rlrun.config import ConfigError, config_dir

# `resume=RUN_DIR` makes RUN_DIR the run's folder (hydra.run.dir); otherwise a new dated one.
OmegaConf.register_new_resolver("rlrun.or_else", lambda value, default: value or default, replace=True)


def fail(message: str, run_dir: Path | None = None) -> None:
    """One line on stderr, exit code 2; a single run's directory is removed so nothing half-made
    looks like a run (a sweep job never gets here: `sweep.isolated` records its error instead).
    A folder holding more than what Hydra just wrote (a run being resumed) is left alone."""
    print(f"rlrun: error: {message}", file=sys.stderr)
    if run_dir is not None and all(p.name == ".hydra" or p.suffix == ".log" for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)
    sys.exit(2)


class CheckOutputDir(Callback):
    """Before Hydra writes anything: a run or sweep folder that cannot be written gets one line."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.check("resume" if config.get("resume") else "hydra.run.dir", config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.check("hydra.sweep.dir", config.hydra.sweep.dir)

    @staticmethod
    def check(key: str, folder: str) -> None:
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=folder).close()
        except OSError as err:
            fail(str(ConfigError(key, str(folder), f"a folder rlrun can write to ({err.strerror or err})")))


def stop(code: int, message: str) -> None:
    print(message, file=sys.stderr)
    sys.exit(code)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg: DictConfig) -> float | None:
    from rlrun import runner  # torch only once Hydra has parsed the command line

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    sweeping = HydraConfig.get().mode == RunMode.MULTIRUN
    again = f"the same sweep with hydra.sweep.dir={HydraConfig.get().sweep.dir}" if sweeping else f"resume={run_dir}"
    try:
        if sweeping:
            return sweep.isolated(lambda: sweep.train_seeds(cfg, run_dir), run_dir)
        return sweep.train_seeds(cfg, run_dir)
    except ConfigError as err:
        fail(str(err), run_dir)
    except runner.Diverged as err:
        stop(1, f"rlrun: error: {err}")
    except runner.Interrupted as err:
        stop(128 + err.signum, f"rlrun: {err}; continue with: rlrun ... {again}")
    except KeyboardInterrupt:
        stop(130, f"rlrun: interrupted; nothing saved since the newest checkpoint; continue with: rlrun ... {again}")


if __name__ == "__main__":
    main()
