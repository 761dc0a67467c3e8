"""Where a run's TensorBoard event files are: in the run folder itself, as CleanRL writes them.

TensorBoard names a run after the folder its event files are in (relative to `--logdir`), so events
in the run folder show as `2026-11-25/10-00-00_ppo_pendulum` or `algo.lr=0.01/seed=1`, never as
`.../tb`. Runs written before rlrun moved them keep theirs in `<run>/tb/`: they are read there, and
a resumed one goes on writing there, so its curves stay one TensorBoard run.

Importable without torch (rlrun-compare reads events without it).
"""

from __future__ import annotations

from pathlib import Path

EVENTS_GLOB = "events.out.tfevents.*"
OLD_EVENTS_DIR = "tb"  # where rlrun wrote them before


def events_dir(run_dir: Path) -> Path:
    """The folder that holds (or will hold) the run's event files."""
    old = Path(run_dir) / OLD_EVENTS_DIR
    return old if any(old.glob(EVENTS_GLOB)) else Path(run_dir)


def has_events(run_dir: Path) -> bool:
    return any(events_dir(run_dir).glob(EVENTS_GLOB))


def run_dir_of(event_file: Path) -> Path:
    """The run folder an event file belongs to."""
    folder = event_file.parent
    old_layout = folder.name == OLD_EVENTS_DIR and not (folder / ".hydra").is_dir()
    return folder.parent if old_layout else folder
