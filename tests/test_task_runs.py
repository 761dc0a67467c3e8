"""Task distributions in runs: training slots draw their tasks from the run's seed, the task reaches the
observation exactly when `task.observe` asks, evaluation keeps the same train and test tasks at every
point and reports each, and a resumed run draws the tasks an uninterrupted one draws."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rlrun import envs, runner, tasks
from rlrun.algos.base import Context
from rlrun.build import build
from rlrun.evaluation import Evaluator
from tests.conftest import TINY, make_config, read_scalars
from tests.test_resume import assert_same_run

# One small iteration of each algorithm that takes Box observations.
ALGOS = {
    "reinforce": ["algo=reinforce", "algo.N=2"],
    "actor_critic": ["algo=actor_critic", "algo.num_envs=2", "algo.T=4"],
    "ppo": ["algo=ppo", "algo.num_envs=2", "algo.T=8", "algo.minibatch_size=16"],
    "fqi": ["algo=fqi", "algo.num_envs=2", "algo.N=64", "algo.batch_size=32", "algo.learning_starts=0", "algo.K=2", "algo.S=4"],
    "qtopt": ["algo=qtopt", "algo.num_envs=2", "algo.N=4", "algo.learning_starts=0"],
}
TASK_OF = {"fqi": "cartpole_variants", "qtopt": "point_goals"}  # Discrete actions for fqi, Box for qtopt
BASE_OBS = {"cartpole_dynamics": 4, "cartpole_variants": 4, "point_goals": 2}


def drawn_tasks(env, episodes: int) -> list[list[dict]]:
    """The task of each slot at each of `episodes` resets (all slots reset together)."""
    drawn = []
    for _ in range(episodes):
        env.reset()
        drawn.append([task.params for task in env.get_attr("task")])
    return drawn


def test_training_slots_draw_their_tasks_reproducibly_from_the_run_seed():
    cfg = make_config("task=cartpole_dynamics")

    def draws(seed: int):
        env = envs.make_vec_env(cfg.env, 3, cfg.task, seed=seed)
        env.reset(seed=11)
        return drawn_tasks(env, 4)

    same = draws(seed=1)
    assert draws(seed=1) == same and draws(seed=2) != same
    assert all(len({tuple(p.values()) for p in slots}) == 3 for slots in same)  # each slot its own task
    assert len({tuple(slots[0].values()) for slots in same}) == 4  # and a new one every episode


def test_context_builds_task_envs_from_the_runs_seed():
    cfg = make_config("task=cartpole_dynamics", "seed=5")
    spaces = envs.check_env(cfg.env, task_cfg=cfg.task)
    ctx = Context(cfg.env, 5, torch.device("cpu"), spaces, task_cfg=cfg.task)
    expected = envs.make_vec_env(cfg.env, 2, cfg.task, seed=5)
    built = ctx.make_vec_env(2)
    for env in (expected, built):
        env.reset(seed=0)
    assert drawn_tasks(built, 3) == drawn_tasks(expected, 3)


def spy_on_vec_envs(monkeypatch) -> list:
    """Every training vector env built from now on."""
    built, make_vec_env = [], envs.make_vec_env

    def spy(*args, **kwargs):
        built.append(make_vec_env(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(envs, "make_vec_env", spy)
    return built


def task_features(env, observe: str) -> np.ndarray:
    """What `observe` should append for each slot's current task."""
    wrappers = [env.envs[i] for i in range(env.num_envs)]
    if observe == "params":
        return np.stack([w._normalise(w.task_values) for w in wrappers])
    return np.stack([w.distribution.onehot(w.task) for w in wrappers])


@pytest.mark.parametrize("algo", sorted(ALGOS))
@pytest.mark.parametrize("observe", ["none", "params", "onehot"])
def test_the_task_reaches_the_observation_exactly_when_asked(algo, observe, monkeypatch):
    task = TASK_OF.get(algo, "cartpole_variants" if observe == "onehot" else "cartpole_dynamics")
    if observe == "onehot" and task != "cartpole_variants":
        pytest.skip("onehot indexes named tasks; point_goals has ranges")
    built = spy_on_vec_envs(monkeypatch)
    algorithm = build(make_config(*ALGOS[algo], f"task={task}", f"task.observe={observe}", "device=cpu"))
    algorithm.iterate(0)  # the networks take what the envs give
    (env,) = built
    obs, _ = env.reset(seed=0)
    base = BASE_OBS[task]
    if observe == "none":
        assert obs.shape == (env.num_envs, base)
    else:
        np.testing.assert_allclose(obs[:, base:], task_features(env, observe), rtol=1e-6)
    assert algorithm.act(obs).shape[0] == env.num_envs


def test_evaluation_runs_the_same_train_and_test_tasks_at_every_point():
    cfg = make_config("task=cartpole_variants")
    fixed = tasks.eval_tasks(cfg.task)
    evaluator = Evaluator(cfg.env, 4, seed=0, task_cfg=cfg.task)
    # each split at least 4 episodes, each of its tasks as many: 3 train tasks twice, the test task 4 times
    expected = [task.name for task in fixed["train"] for _ in range(2)] + [fixed["test"][0].name] * 4
    rng = np.random.default_rng(0)
    for _ in range(3):  # a policy that changes between evaluations, as a training one does
        evaluator(lambda obs: rng.integers(2, size=len(obs)))
        assert [task.name for task in evaluator.env.get_attr("task")] == expected
    always_right = evaluator(lambda obs: np.ones(len(obs), dtype=np.int64))
    assert evaluator(lambda obs: np.ones(len(obs), dtype=np.int64)).metrics == always_right.metrics
    metrics = always_right.metrics
    names = [task.name for split in fixed.values() for task in split]
    assert set(metrics) == {
        "eval/episodic_return",
        "eval/train_tasks/episodic_return",
        "eval/test_tasks/episodic_return",
        *(f"eval/{name}/episodic_return" for name in names),
    }
    assert metrics["eval/episodic_return"] == metrics["eval/train_tasks/episodic_return"]
    assert always_right.returns.mean() == pytest.approx(metrics["eval/episodic_return"])
    per_train_task = [metrics[f"eval/{task.name}/episodic_return"] for task in fixed["train"]]
    assert np.mean(per_train_task) == pytest.approx(metrics["eval/train_tasks/episodic_return"])
    assert len(set(per_train_task)) > 1  # the variants differ, so one policy's returns do


def test_evaluation_on_ranges_weighs_each_fixed_task_equally():
    cfg = make_config("task=point_goals")
    evaluator = Evaluator(cfg.env, 3, seed=0, task_cfg=cfg.task)
    result = evaluator(lambda obs: np.zeros((len(obs), 2), dtype=np.float32))
    fixed = tasks.eval_tasks(cfg.task)  # 10 per split: one episode each covers the 3 asked for
    assert [t.params for t in evaluator.env.get_attr("task")] == [t.params for split in fixed.values() for t in split]
    assert len(result.returns) == cfg.task.eval_tasks and set(result.metrics) == {
        "eval/episodic_return",
        "eval/train_tasks/episodic_return",
        "eval/test_tasks/episodic_return",
    }


def test_a_tiny_run_logs_and_summarises_every_task_set(tmp_path):
    cfg = make_config(*ALGOS["fqi"], "task=cartpole_variants", *TINY, "checkpoint.every=0")
    final = runner.train(cfg, tmp_path)
    scalars = read_scalars(tmp_path)
    names = [name for split in ("train", "test") for name in cfg.task.named[split]]
    tags = ["train_tasks/episodic_return", "test_tasks/episodic_return", *(f"{n}/episodic_return" for n in names)]
    summary = json.loads((tmp_path / runner.SUMMARY_FILE).read_text())
    eval_steps = [step for step, _ in scalars["eval/episodic_return"]]
    assert len(eval_steps) == 2 and eval_steps[-1] == summary["env_steps"]
    for tag in tags:
        assert [step for step, _ in scalars[f"eval/{tag}"]] == eval_steps
        assert summary[tag] == pytest.approx(scalars[f"eval/{tag}"][-1][1])
    assert final == summary["eval_return_mean"] == pytest.approx(summary["train_tasks/episodic_return"])


def test_a_run_resumed_from_its_checkpoint_draws_the_tasks_of_an_uninterrupted_run(tmp_path):
    """The task generators of the training envs are part of the checkpoint."""
    overrides = [
        *ALGOS["ppo"][:-1],
        "algo.minibatch_size=8",
        "algo.lr_anneal_steps=null",
        "task=cartpole_dynamics",
        "task.observe=params",
        "eval.every=96",
        "eval.episodes=1",
        "checkpoint.every=96",
        "log.every=32",
        "log.progress=none",
    ]
    resumed = tmp_path / "resumed"
    runner.train(make_config(*overrides, "total_timesteps=96"), resumed)
    assert json.loads((resumed / runner.SUMMARY_FILE).read_text())["env_steps"] < 192  # stopped after one checkpoint
    runner.train(make_config(*overrides, "total_timesteps=288"), resumed)
    straight = tmp_path / "straight"
    runner.train(make_config(*overrides, "total_timesteps=288"), straight)
    assert_same_run(resumed, straight)
