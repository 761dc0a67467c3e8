"""The `rlrun` command: Hydra composes the config, `rlrun.runner` trains."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from rlrun.config import ConfigError


def config_dir() -> str:
    """`configs/` shipped inside the wheel, or the checkout's top-level one (editable installs)."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "configs", package.parent / "configs"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"rlrun's configs/ is missing next to {package}")


def fail(message: str, run_dir: Path | None = None) -> None:
    """One line on stderr, exit code 2; a single run's directory is removed so nothing half-made
    looks like a run (a sweep keeps its job folder, whose log says what went wrong)."""
    print(f"rlrun: error: {message}", file=sys.stderr)
    if run_dir is not None and HydraConfig.get().mode == RunMode.RUN:
        shutil.rmtree(run_dir, ignore_errors=True)
    sys.exit(2)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg: DictConfig) -> float:
    from rlrun import runner  # heavy imports (torch) only once Hydra has parsed the command line

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        return runner.train(cfg, run_dir)
    except ConfigError as err:
        fail(str(err), run_dir)


if __name__ == "__main__":
    main()
