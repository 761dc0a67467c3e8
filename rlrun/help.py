"""`rlrun --help`: the composed config, each key with the comment its yaml file gives it.

Hydra's own help prints the config without comments. `hydra.help.template` in configs/config.yaml
calls `${rlrun.documented_config:}` instead, a resolver that importing this module registers. The
comments come from the files the run's defaults list composed (the root config, the chosen env and
algo, any preset), looked up on the config search path as Hydra looks them up, so a `--config-dir`
file's comments show too. Where several files set a key, the last one that comments it wins, as
the last one that sets it wins its value.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[\w-]+):(?P<rest>.*)$")  # `key: value  # comment`
COMMENT_COLUMN = 36  # `key: value` padded to this width before its comment


def yaml_comments(text: str) -> dict[str, str]:
    """{dotted key: the comment on its line} of a yaml file's mappings. Indentation gives the
    nesting; list items and the lines of block scalars (`key: |`) are skipped."""
    comments = {}
    enclosing: list[tuple[int, str]] = []  # (indent, key) of the keys the next line may sit under
    block_indent = None  # set inside a block scalar: its lines are indented deeper than its key
    for line in text.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        if block_indent is not None and (indent > block_indent or not line.strip()):
            continue
        block_indent = None
        match = KEY_LINE.match(line)
        if match is None:
            continue
        while enclosing and enclosing[-1][0] >= indent:
            enclosing.pop()
        enclosing.append((indent, match["key"]))
        value, _, comment = match["rest"].partition(" #")
        if value.strip().startswith(("|", ">")):
            block_indent = indent
        if comment.strip():
            comments[".".join(key for _, key in enclosing)] = comment.strip()
    return comments


def composed_comments(hydra_cfg: DictConfig) -> dict[str, str]:
    """{dotted key: comment} over the yaml files of the run's defaults list, in composition order."""
    overrides = [*hydra_cfg.overrides.hydra, *hydra_cfg.overrides.task]
    defaults = GlobalHydra.instance().config_loader().compute_defaults_list(
        hydra_cfg.job.config_name, overrides, RunMode.RUN
    )
    folders = [Path(source.path) for source in hydra_cfg.runtime.config_sources if source.schema == "file"]
    comments: dict[str, str] = {}
    for default in defaults.defaults:
        files = [folder / f"{default.config_path}.yaml" for folder in folders]
        file = next((f for f in files if f.is_file()), None)
        if file is None:  # Hydra's own configs and structured configs have no yaml of ours
            continue
        prefix = f"{default.package}." if default.package else ""
        comments.update({prefix + key: text for key, text in yaml_comments(file.read_text()).items()})
    return comments


def flow(value: Any) -> str:
    """A config value as one line of yaml: null, true, [32, 32], {a: 1}; interpolations as written."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(flow(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {flow(item)}" for key, item in value.items()) + "}"
    return str(value) if value != "" else "''"


def documented_lines(node: dict, comments: dict[str, str], prefix: str = "", indent: str = "") -> list[tuple[str, str]]:
    """(`key: value` with its indentation, comment) for every key of `node`, nested keys beneath theirs."""
    lines = []
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            lines.append((f"{indent}{key}:", comments.get(dotted, "")))
            lines.extend(documented_lines(value, comments, f"{dotted}.", indent + "  "))
        else:
            lines.append((f"{indent}{key}: {flow(value)}", comments.get(dotted, "")))
    return lines


def documented_config(*, _root_: DictConfig) -> str:
    """The composed config without `hydra`, one `key: value  # comment` line per key, values as
    composed (overrides applied, interpolations unresolved)."""
    config = OmegaConf.to_container(_root_, resolve=False)
    config.pop("hydra", None)
    lines = documented_lines(config, composed_comments(_root_.hydra))
    text = "\n".join(f"{entry:<{COMMENT_COLUMN}}  # {comment}" if comment else entry for entry, comment in lines)
    return text.replace("$", "$$")  # Hydra fills the help template in with string.Template, where $ is special


OmegaConf.register_new_resolver("rlrun.documented_config", documented_config, replace=True)
