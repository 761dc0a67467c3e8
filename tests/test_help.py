"""`rlrun --help` shows the composed config with each key's comment from the yaml file that set it."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir

from rlrun.config import config_dir
from rlrun.help import yaml_comments
from tests.conftest import run_cli


def help_config(*overrides: str) -> str:
    """The config part of the help text, as Hydra's help template resolves it."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
        return cfg.hydra.help.template


def comment_of(yaml_file: str, key: str) -> str:
    return yaml_comments((Path(config_dir()) / yaml_file).read_text())[key]


def line_of(text: str, key: str, indent: str = "") -> str:
    return next(line for line in text.splitlines() if line.startswith(f"{indent}{key}:"))


def test_yaml_comments_follow_the_nesting_and_skip_lists_and_block_text():
    text = (
        "# @package _global_\n"
        "defaults:\n"
        "  - env: cartpole  # not a key\n"
        "seed: 0  # seeds everything\n"
        "eval:  # evaluation\n"
        "  every: 5000  # steps between evaluations # with a hash\n"
        "  episodes: 10\n"
        "help:\n"
        "  header: |\n"
        "    usage: rlrun key=value  # part of the text\n"
        "\n"
        "    more: text\n"
        "  footer: end  # the footer\n"
        "N: 4  # after the block\n"
    )
    assert yaml_comments(text) == {
        "seed": "seeds everything",
        "eval": "evaluation",
        "eval.every": "steps between evaluations # with a hash",
        "help.footer": "the footer",
        "N": "after the block",
    }


def test_help_shows_each_key_of_the_chosen_groups_with_its_comment_and_the_overridden_value():
    text = help_config("algo=ppo", "env=mountaincar_continuous", "algo.lr=0.5")  # a pair without a file of its own
    seed = line_of(text, "seed")
    assert seed.startswith("seed: 0 ") and seed.endswith(f"# {comment_of('config.yaml', 'seed')}")
    lr = line_of(text, "lr", indent="  ")
    assert lr.startswith("  lr: 0.5 ") and lr.endswith(f"# {comment_of('algo/ppo.yaml', 'lr')}")
    env_id = line_of(text, "id", indent="  ")
    assert env_id.startswith("  id: MountainCarContinuous-v0 ")
    assert env_id.endswith(f"# {comment_of('env/mountaincar_continuous.yaml', 'id')}")
    assert line_of(text, "eval").endswith(f"# {comment_of('config.yaml', 'eval')}")
    assert "hydra" not in [line.split(":")[0] for line in text.splitlines()]


def test_help_shows_a_config_dir_file_with_its_comments_and_dollars_intact(tmp_cwd):
    (tmp_cwd / "mine" / "env").mkdir(parents=True)
    (tmp_cwd / "mine" / "env" / "short_pole.yaml").write_text(
        "name: short_pole  # run-directory name\n"
        "id: CartPole-v1  # gymnasium id\n"
        "max_episode_steps: ${seed}  # time limit, costs $0\n"
    )
    out = run_cli("--config-dir", "mine", "env=short_pole", "--help", cwd=tmp_cwd).stdout
    assert line_of(out, "name", indent="  ").endswith("# run-directory name")
    assert line_of(out, "max_episode_steps", indent="  ").startswith("  max_episode_steps: ${seed} ")
    assert line_of(out, "max_episode_steps", indent="  ").endswith("# time limit, costs $0")
    assert "algo: actor_critic" in out  # the config groups are still listed
