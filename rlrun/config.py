"""Validation of a composed config: one readable line per mistake, before anything runs.

Hydra already rejects unknown keys and unknown group options. What it cannot know is which
values make sense, so every key of `configs/config.yaml` and of each algorithm's yaml has a
rule here (top-level) or in its algorithm module (`RULES`). A test checks that yaml and rules
list the same keys.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf


def config_dir() -> str:
    """`configs/` shipped inside the wheel, or the checkout's top-level one (editable installs)."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "configs", package.parent / "configs"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"rlrun's configs/ is missing next to {package}")


def with_added_keys(stored: DictConfig) -> DictConfig:
    """A run's stored config with the algorithm keys rlrun gained since the run was made, at their
    defaults in configs/algo/ (which keep what such a run did: algo.n_step 1, algo.dueling false,
    algo.critic_lr null), so an older run can still be resumed, evaluated and collected from."""
    algo = stored.get("algo")
    path = Path(config_dir()) / "algo" / f"{algo.get('name')}.yaml" if isinstance(algo, DictConfig) else None
    if path is None or not path.is_file():
        return stored  # not an algorithm rlrun knows: validation says so
    defaults = OmegaConf.to_container(OmegaConf.load(path), resolve=False)  # `${total_timesteps}` stays as written
    missing = {key: value for key, value in defaults.items() if key not in algo}
    if not missing:
        return stored
    stored = stored.copy()
    for key, value in missing.items():
        OmegaConf.update(stored, f"algo.{key}", value, merge=False, force_add=True)
    return stored


class ConfigError(ValueError):
    """A config value that is not allowed. `str(err)` is the one line shown to the user."""

    def __init__(self, key: str, value: Any, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={_show(value)} is not allowed: {allowed}")


def _show(value: Any) -> str:
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value)
    return repr(value) if isinstance(value, str) else str(value)


@dataclass(frozen=True)
class Rule:
    """What a key accepts, with the words used to say so."""

    check: Callable[[Any], bool]
    allowed: str

    def __call__(self, key: str, value: Any) -> None:
        if not self.check(value):
            raise ConfigError(key, value, self.allowed)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _bounds_text(low, high, low_open, high_open) -> str:
    if high is None:
        return f"> {low}" if low_open else f">= {low}"
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    return f"in {left}{low}, {high}{right}"


def number(low: float, high: float | None = None, *, low_open=False, high_open=False) -> Rule:
    """A finite int or float within the bounds."""

    def ok(v):
        if not _is_number(v):
            return False
        above = v > low if low_open else v >= low
        below = high is None or (v < high if high_open else v <= high)
        return above and below

    return Rule(ok, f"a number {_bounds_text(low, high, low_open, high_open)}")


def integer(low: int, high: int | None = None) -> Rule:
    """An int within [low, high]."""
    return Rule(
        lambda v: _is_int(v) and v >= low and (high is None or v <= high),
        f"an integer {_bounds_text(low, high, False, False)}",
    )


def choice(*options: Any) -> Rule:
    return Rule(lambda v: v in options, "one of " + ", ".join(map(str, options)))


def flag() -> Rule:
    return Rule(lambda v: isinstance(v, bool), "true or false")


def optional(rule: Rule) -> Rule:
    return Rule(lambda v: v is None or rule.check(v), f"null or {rule.allowed}")


def text() -> Rule:
    return Rule(lambda v: isinstance(v, str) and v != "", "a non-empty string")


def layers() -> Rule:
    """Hidden layer widths: a list of positive ints, none wider than MAX_LAYER_WIDTH."""
    return Rule(
        lambda v: isinstance(v, (list, ListConfig)) and all(_is_int(w) and 1 <= w <= MAX_LAYER_WIDTH for w in v),
        f"a list of integers in [1, {MAX_LAYER_WIDTH}], e.g. [64,64]",
    )


# Upper bounds of values whose cost grows with them; far above any sensible setting, they turn a typo
# such as 10**9 into one line instead of a memory error. What fits between them and the machine's
# memory is estimated once the env's spaces are known (rlrun.memory).
MAX_SEED = 2**32 - 1  # numpy's global seed is 32 bits
MAX_SIDE_BY_SIDE = 100_000  # envs stepped side by side: eval.episodes, reinforce's N
MAX_TRANSITIONS = 10**9  # transitions a buffer, an iteration's collection or a dataset holds
MAX_LAYER_WIDTH = 65_536  # units of one hidden layer

# Top-level keys. `env` is checked by building it (rlrun.envs); `algo` by its module's RULES.
RULES: dict[str, Rule] = {
    "seed": integer(0, MAX_SEED),
    "seeds": integer(1, 10_000),
    "device": choice("auto", "cpu", "cuda"),
    "threads": integer(1),
    "total_timesteps": integer(1),
    "resume": optional(text()),
    "eval.every": integer(0),
    "eval.episodes": integer(1, MAX_SIDE_BY_SIDE),
    "eval.stop_at": optional(Rule(_is_number, "a number")),
    "eval.video": flag(),
    "eval.video_every": integer(0),
    "log.progress": choice("auto", "bar", "lines", "none"),
    "log.every": optional(integer(1)),
    "log.every_s": number(0, low_open=True),
    "checkpoint.every": integer(0),
    "checkpoint.keep": integer(1),
}


def check(cfg: DictConfig, rules: Mapping[str, Rule], prefix: str = "") -> None:
    """Apply `rules` to `cfg` (dotted keys, relative to `prefix`); raise the first ConfigError."""
    for key, rule in rules.items():
        full_key = prefix + key
        value = OmegaConf.select(cfg, full_key, throw_on_missing=False)
        rule(full_key, value)
