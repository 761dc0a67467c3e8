"""Policy iteration and value iteration against known answers, each other, and bad input."""

from __future__ import annotations

import logging
from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from rlrun import runner
from rlrun.algos.dynamic_programming import Model, value_picture
from rlrun.build import build
from rlrun.checkpoint import load_policy
from rlrun.config import ConfigError
from tests.conftest import make_config, read_scalars, run_cli

GAMMA = 0.9


class ThreeStates(gym.Env):
    """s0: a0 goes on to s1; a1 ends the episode with +1 but lands on s1 (whose value must not count).
    s1: a0 ends with +10 in s2 or stays, 1/2 each; a1 goes back to s0.
    s2: terminal, yet its table has a +5 self-loop that goes on (as CliffWalking's goal row has moves).
    With gamma = 0.9: V(s1) = 5 / (1 - 0.45) = 100/11, V(s0) = 0.9 V(s1), V(s2) = 0; pi = (a0, a0)."""

    observation_space = gym.spaces.Discrete(3)
    action_space = gym.spaces.Discrete(2)
    initial_state_distrib = np.array([1.0, 0.0, 0.0])
    P: ClassVar[dict] = {
        0: {0: [(1.0, 1, 0.0, False)], 1: [(1.0, 1, 1.0, True)]},
        1: {0: [(0.5, 2, 10.0, True), (0.5, 1, 0.0, False)], 1: [(1.0, 0, 0.0, False)]},
        2: {0: [(1.0, 2, 5.0, False)], 1: [(1.0, 2, 5.0, False)]},
    }

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.s = 0
        return self.s, {}

    def step(self, action):
        outcomes = self.P[self.s][int(action)]
        _, self.s, reward, terminated = outcomes[self.np_random.choice(len(outcomes), p=[o[0] for o in outcomes])]
        return self.s, reward, terminated, False, {}


gym.register("rlrun-test/ThreeStates-v0", entry_point=ThreeStates, max_episode_steps=50)
THREE_STATES = ["env=gym", "env.id=rlrun-test/ThreeStates-v0"]
KNOWN_V = np.array([GAMMA * 100 / 11, 100 / 11, 0.0])


def solve(*overrides: str):
    """Build the algorithm and run its box until it says it has converged."""
    algo = build(make_config(*overrides))
    while not algo.finished:
        algo.iterate(0)
    return algo


def exact_value(algo, pi: np.ndarray) -> np.ndarray:
    r_pi, P_pi = algo.model.policy_model(pi)
    return np.linalg.solve(np.eye(len(r_pi)) - algo.cfg.gamma * P_pi, r_pi)


@pytest.mark.parametrize(
    "algo", ["algo=value_iteration", "algo=policy_iteration", "algo=policy_iteration algo.evaluation=iterative"]
)
def test_three_state_mdp_reaches_the_known_answer_with_terminal_states_handled(algo):
    solved = solve(*algo.split(), *THREE_STATES, f"algo.gamma={GAMMA}")
    assert solved.model.terminal.tolist() == [False, False, True]
    np.testing.assert_allclose(solved.V, KNOWN_V, atol=1e-8)
    assert solved.pi[:2].tolist() == [0, 0]
    assert solved.act(np.array([1, 0, 1])).tolist() == [0, 0, 0]


def test_value_and_policy_iteration_agree_on_frozenlake_4x4():
    env = ["env=frozenlake", "algo.gamma=0.99"]
    vi = solve("algo=value_iteration", *env)
    pi = solve("algo=policy_iteration", *env)
    pi_iterative = solve("algo=policy_iteration", "algo.evaluation=iterative", *env)
    np.testing.assert_allclose(vi.V, pi.V, atol=1e-7)
    np.testing.assert_allclose(pi_iterative.V, pi.V, atol=1e-7)
    np.testing.assert_allclose(exact_value(vi, vi.pi), pi.V, atol=1e-7)  # VI's greedy policy is optimal too
    assert 1 < pi.iteration < vi.iteration


def test_policy_iteration_stops_only_once_no_action_changes():
    algo = build(make_config("algo=policy_iteration", "env=frozenlake"))
    changes = []
    while not algo.finished:
        changes.append(algo.iterate(0)[1]["dp/policy_changes"])
    assert changes[-1] == 0 and all(c > 0 for c in changes[:-1])


def test_a_run_logs_every_iteration_and_saves_values_policy_and_picture(tmp_path, caplog):
    cfg = make_config(
        "algo=value_iteration", "env=frozenlake", "eval.every=1", "eval.episodes=2", "log.progress=none"
    )
    with caplog.at_level(logging.INFO, logger="rlrun"):
        runner.train(cfg, tmp_path)
    V, pi = np.load(tmp_path / "values.npy"), np.load(tmp_path / "policy.npy")
    assert V.shape == pi.shape == (16,) and V[15] == 0 and V[0] > 0
    assert (tmp_path / "values.png").stat().st_size > 0
    scalars = read_scalars(tmp_path)
    residuals = scalars["dp/bellman_residual"]
    assert [x for x, _ in residuals] == list(range(1, len(residuals) + 1))  # x-axis: iterations
    assert residuals[-1][1] < cfg.algo.theta <= residuals[-2][1]
    assert len(scalars["eval/episodic_return"]) == len(residuals)  # the greedy policy, evaluated by the runner
    # the last line counts iterations, and says why the run stopped short of total_timesteps
    assert f"| {len(residuals)} iterations (value_iteration finished before total_timesteps=" in caplog.messages[-1]
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")
    assert (load_policy(tmp_path)(np.arange(16)) == pi).all()  # model.pt holds the solution
    assert (load_policy(tmp_path, device="auto")(np.arange(16)) == pi).all()  # a run's device value (DAgger's expert)


def test_gamma_1_is_accepted_only_where_every_policy_ends():
    always_ends = {0: {0: [(1.0, 1, 1.0, False)], 1: [(1.0, 0, 0.0, True)]}, 1: {0: [(1.0, 0, 2.0, True)]}}
    assert not Model.from_table(always_ends, 2, 1).has_endless_policy()
    with pytest.raises(ConfigError, match=r"algo.gamma=1 is not allowed: a number in \[0, 1\) for env=frozenlake"):
        build(make_config("algo=value_iteration", "env=frozenlake", "algo.gamma=1"))
    with pytest.raises(ConfigError, match="algo.gamma=1"):
        build(make_config("algo=policy_iteration", *THREE_STATES, "algo.gamma=1"))


@pytest.mark.parametrize("theta", ["0", "-1e-6"])
def test_theta_must_be_positive(theta):
    with pytest.raises(ConfigError, match=r"algo.theta=\S+ is not allowed: a number > 0"):
        build(make_config("algo=value_iteration", "env=frozenlake", f"algo.theta={theta}"))


def test_env_without_a_model_gets_one_line_naming_the_envs_that_have_one(tmp_cwd):
    proc = run_cli("algo=policy_iteration", "env=cartpole", cwd=tmp_cwd, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        (
            "rlrun: error: env='cartpole' is not allowed: an env with a known model (discrete states and actions, "
            "unwrapped.P) for algo=policy_iteration: frozenlake, taxi, cliffwalking"
        )
    ]


def draw_value_picture(monkeypatch, env_id: str, **kwargs):
    """value_picture of `env_id` for a made-up V, with the matplotlib figure it drew."""
    figures = []

    class RecordedFigure(Figure):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            figures.append(self)

    monkeypatch.setattr("rlrun.algos.dynamic_programming.Figure", RecordedFigure)
    env = gym.make(env_id, **kwargs)
    unwrapped = env.unwrapped
    n_states, n_actions = int(env.observation_space.n), int(env.action_space.n)
    model = Model.from_table(unwrapped.P, n_states, n_actions, np.asarray(unwrapped.initial_state_distrib) > 0)
    V = np.linspace(-1.0, 1.0, n_states)
    picture = value_picture(env, model, V, np.zeros(n_states, dtype=np.int64), "the title")
    return picture, figures[0], model


def pixel(picture: np.ndarray, figure, x: float, y: float) -> tuple[int, ...]:
    """The picture's colour at data coordinates (x, y) of the map (column, row)."""
    ax = figure.axes[0]
    px, py = ax.transData.transform((x, y))
    return tuple(int(c) for c in picture[picture.shape[0] - round(py), round(px)])


def cell_texts(figure) -> dict[tuple[float, float], str]:
    return {tuple(np.round(t.get_position(), 2)): t.get_text() for t in figure.axes[0].texts}


def test_value_picture_labels_its_scale_marks_the_start_and_greys_out_goal_and_holes(monkeypatch):
    picture, figure, model = draw_value_picture(monkeypatch, "FrozenLake-v1", map_name="4x4")
    image = figure.axes[0].images[0]
    assert image.colorbar.ax.get_ylabel() == "V(s)"
    shown = np.ma.getmaskarray(image.get_array()).ravel()
    assert shown.tolist() == model.terminal.tolist()  # holes and goal take no colour of the scale
    texts = cell_texts(figure)
    assert texts[(3.0, 3.0)] == "goal" and texts[(1.0, 1.0)] == "hole" and texts[(0.0, -0.3)] == "start"
    grey = pixel(picture, figure, 3.3, 3.3)  # beside the goal's name
    assert grey[0] == grey[1] == grey[2] and 200 < grey[0] < 240
    assert pixel(picture, figure, 0.0, 0.44) == (255, 69, 0)  # the start cell's orangered outline
    caption = figure.axes[0].get_xlabel()
    assert "greedy action" in caption and "the episode ends there" in caption


def test_value_picture_draws_cliffwalking_cliff_cells_hatched_and_named(monkeypatch):
    picture, figure, model = draw_value_picture(monkeypatch, "CliffWalking-v1")
    cliff = [37 + i for i in range(10)]
    assert model.unreachable[cliff].all()
    texts = cell_texts(figure)
    assert [texts[(float(s % 12), 3.0)] for s in cliff] == ["cliff"] * 10 and texts[(11.0, 3.0)] == "goal"
    for s in cliff:  # not blank: the cell's fill shows beside its name
        assert pixel(picture, figure, s % 12 + 0.3, 3.3) != (255, 255, 255)
    assert "cliff: an episode is never there" in figure.axes[0].get_xlabel()

