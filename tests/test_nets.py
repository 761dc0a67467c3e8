"""The policy distributions against torch.distributions, their samplers against their probabilities,
the numpy policy against the torch one, rlrun's Adam and gradient clipping against torch's, the dueling Q head,
and the Q networks' hand-written backward against autograd."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Categorical as TorchCategorical
from torch.distributions import Independent, Normal

from rlrun.nets import (
    ActorCritic,
    Adam,
    Categorical,
    DiagonalGaussian,
    NumpyPolicy,
    Policy,
    QNetwork,
    RMSprop,
    StateActionQ,
    TorchActing,
    as_tensors,
    clip_grad_norm_,
)


def test_categorical_log_prob_and_entropy_match_torch():
    logits = torch.randn(5, 7, 3) * 4
    ours, theirs = Categorical(logits), TorchCategorical(logits=logits)
    actions = theirs.sample()
    torch.testing.assert_close(ours.log_prob(actions), theirs.log_prob(actions))
    torch.testing.assert_close(ours.entropy(), theirs.entropy())


def test_categorical_entropy_stays_finite_when_a_probability_underflows_to_zero():
    entropy = Categorical(torch.tensor([[0.0, -1e4, 5.0]])).entropy()
    assert torch.isfinite(entropy).all() and entropy.item() >= 0


def test_gumbel_max_samples_follow_the_softmax():
    torch.manual_seed(0)
    logits = torch.tensor([0.0, 1.0, 2.0, -1.0])
    n = 40_000
    samples = Categorical(logits.expand(n, 4)).sample()
    frequencies = torch.bincount(samples, minlength=4) / n
    p = logits.softmax(-1)
    standard_errors = (p * (1 - p) / n).sqrt()
    assert ((frequencies - p).abs() < 4 * standard_errors).all()


def test_diagonal_gaussian_matches_torch():
    mean, log_std = torch.randn(6, 2), torch.tensor([-0.5, 0.3])
    ours, theirs = DiagonalGaussian(mean, log_std), Independent(Normal(mean, log_std.exp()), 1)
    actions = theirs.sample()
    torch.testing.assert_close(ours.log_prob(actions), theirs.log_prob(actions))
    torch.testing.assert_close(ours.entropy(), theirs.entropy())


def test_diagonal_gaussian_samples_have_its_mean_and_std():
    torch.manual_seed(0)
    n, mean, log_std = 40_000, torch.tensor([1.0, -2.0]), torch.tensor([0.0, math.log(0.5)])
    samples = DiagonalGaussian(mean.expand(n, 2), log_std).sample()
    std = log_std.exp()
    assert ((samples.mean(0) - mean).abs() < 4 * std / math.sqrt(n)).all()
    assert ((samples.std(0) - std).abs() < 0.02 * std).all()


def two_layer_nets(n: int) -> list[torch.nn.Module]:
    """`n` identical small networks, plus a parameter that never gets a gradient (Adam skips it)."""
    nets = []
    for _ in range(n):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
        net.unused = torch.nn.Parameter(torch.ones(3))
        nets.append(net)
    return nets


def optimizer_steps(net: torch.nn.Module, optimizer, steps: range, lr: float = 0.01) -> None:
    """Gradient steps on a fixed regression, with the learning rate annealed through param_groups."""
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    for i in steps:
        optimizer.param_groups[0]["lr"] = lr * (1 - i / 100)
        optimizer.zero_grad()
        (net(x) - x[:, :2]).pow(2).mean().backward()
        optimizer.step()


def torch_adam_like(ours: Adam, params, eps: float) -> torch.optim.Adam:
    """The torch.optim.Adam whose arithmetic `ours` reproduces: fused, or the single-tensor loop."""
    return torch.optim.Adam(params, lr=0.01, eps=eps, **({"fused": True} if ours.fused else {"foreach": False}))


@pytest.mark.parametrize("fused", [False, True])
def test_adam_steps_and_state_dict_are_torch_optim_adams_bit_for_bit(fused):
    a, b = two_layer_nets(2)
    ours = Adam(a.parameters(), lr=0.01, eps=1e-5, fused=fused)
    theirs = torch_adam_like(ours, b.parameters(), eps=1e-5)
    optimizer_steps(a, ours, range(30))
    optimizer_steps(b, theirs, range(30))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert torch.equal(a.unused, torch.ones(3))
    mine, reference = ours.state_dict(), theirs.state_dict()
    keys = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "fused", "params")
    assert [{k: g[k] for k in keys} for g in mine["param_groups"]] == [{k: g[k] for k in keys} for g in reference["param_groups"]]
    assert mine["state"].keys() == reference["state"].keys() == {1, 2, 3, 4}  # not the unused parameter (index 0)
    for i, state in mine["state"].items():
        assert state.keys() == reference["state"][i].keys()
        assert all(torch.equal(v, reference["state"][i][k]) and v.dtype == reference["state"][i][k].dtype
                   for k, v in state.items())


@pytest.mark.parametrize("fused", [False, True])
def test_adam_loaded_from_a_live_adam_keeps_state_of_its_own(fused):
    """A state_dict handed over in memory (not through a file): stepping the copy leaves the
    original's step counts and moments as they were, as torch.optim's load_state_dict does."""
    a, b = two_layer_nets(2)
    original = Adam(a.parameters(), lr=0.01, fused=fused)
    optimizer_steps(a, original, range(3))
    before = {i: {k: v.clone() for k, v in s.items()} for i, s in original.state_dict()["state"].items()}
    b.load_state_dict(a.state_dict())
    copy = Adam(b.parameters(), lr=0.01, fused=fused)
    copy.load_state_dict(original.state_dict())
    optimizer_steps(b, copy, range(3, 5))
    after = original.state_dict()["state"]
    assert all(torch.equal(after[i][k], v) for i, s in before.items() for k, v in s.items())


@pytest.mark.parametrize("fused", [False, True])
def test_adam_continues_from_a_torch_optim_adam_checkpoint_and_back(fused, tmp_path):
    """Checkpoints of earlier versions hold torch.optim.Adam's state_dict: resuming from one steps on
    exactly as torch would have; and torch.optim.Adam reads ours."""
    a, b, c = two_layer_nets(3)
    theirs = torch_adam_like(Adam(a.parameters(), lr=0.01, fused=fused), b.parameters(), eps=1e-8)
    optimizer_steps(b, theirs, range(10))
    torch.save({"net": b.state_dict(), "optimizer": theirs.state_dict()}, tmp_path / "ckpt.pt")
    saved = torch.load(tmp_path / "ckpt.pt")
    a.load_state_dict(saved["net"])
    ours = Adam(a.parameters(), lr=0.5, fused=fused)
    ours.load_state_dict(saved["optimizer"])
    optimizer_steps(a, ours, range(10, 20))
    optimizer_steps(b, theirs, range(10, 20))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))

    c.load_state_dict(a.state_dict())
    back = torch_adam_like(ours, c.parameters(), eps=1e-8)
    torch.save(ours.state_dict(), tmp_path / "ours.pt")
    back.load_state_dict(torch.load(tmp_path / "ours.pt"))
    optimizer_steps(a, ours, range(20, 25))
    optimizer_steps(c, back, range(20, 25))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_rmsprop_steps_state_dict_and_checkpoints_are_torch_optim_rmsprops_bit_for_bit(tmp_path):
    a, b, c, d = two_layer_nets(4)
    ours = RMSprop(a.parameters(), lr=0.01, alpha=0.99, eps=1e-5)
    theirs = torch.optim.RMSprop(b.parameters(), lr=0.01, alpha=0.99, eps=1e-5, foreach=False)
    optimizer_steps(a, ours, range(30))
    optimizer_steps(b, theirs, range(30))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert torch.equal(a.unused, torch.ones(3))
    mine, reference = ours.state_dict(), theirs.state_dict()
    keys = reference["param_groups"][0].keys() - {"foreach"}  # torch writes the False it was given
    assert [{k: g[k] for k in keys} for g in mine["param_groups"]] == [{k: g[k] for k in keys} for g in reference["param_groups"]]
    assert mine["state"].keys() == reference["state"].keys() == {1, 2, 3, 4}
    for i, state in mine["state"].items():
        assert state.keys() == reference["state"][i].keys() == {"step", "square_avg"}
        assert all(torch.equal(v, reference["state"][i][k]) and v.dtype == reference["state"][i][k].dtype
                   for k, v in state.items())

    # torch reads ours and ours reads torch's, through files, and both step on as the other would have
    torch.save(ours.state_dict(), tmp_path / "ours.pt")
    torch.save(theirs.state_dict(), tmp_path / "theirs.pt")
    c.load_state_dict(a.state_dict())
    d.load_state_dict(b.state_dict())
    back = torch.optim.RMSprop(c.parameters(), lr=0.5, foreach=False)
    back.load_state_dict(torch.load(tmp_path / "ours.pt"))
    forth = RMSprop(d.parameters(), lr=0.5)
    forth.load_state_dict(torch.load(tmp_path / "theirs.pt"))
    for net, optimizer in ((a, ours), (b, theirs), (c, back), (d, forth)):
        optimizer_steps(net, optimizer, range(30, 40))
    assert all(torch.equal(p, q) and torch.equal(p, r) and torch.equal(p, s)
               for p, q, r, s in zip(a.parameters(), b.parameters(), c.parameters(), d.parameters()))


def test_adam_refuses_a_state_dict_of_other_parameters():
    a, b = two_layer_nets(2)
    ours = Adam(a.parameters(), lr=0.01)
    optimizer_steps(a, ours, range(2))
    with pytest.raises(ValueError):
        Adam(list(b.parameters())[:2], lr=0.01).load_state_dict(ours.state_dict())


def test_dueling_q_is_value_plus_centred_advantages():
    """Q(s, a) = V(s) + A(s, a) - mean_a A(s, a): the mean over actions of Q is V, the gaps are A's."""
    torch.manual_seed(0)
    q = QNetwork(gym.spaces.Box(-1, 1, (4,)), 3, [8], dueling=True)
    obs = torch.randn(5, 4)
    out = q.body(q.encode(obs))
    values, advantages = out[:, :1], out[:, 1:]
    torch.testing.assert_close(q(obs).mean(-1, keepdim=True), values)
    torch.testing.assert_close(q(obs)[:, 1] - q(obs)[:, 0], advantages[:, 1] - advantages[:, 0])


SPACES = {
    "box": gym.spaces.Box(-1, 1, (4,)),
    "discrete": gym.spaces.Discrete(5),
    "dict": gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, (2,)), "b": gym.spaces.Box(-1, 1, (3,))}),
}


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("activation,dueling", [("relu", False), ("relu", True), ("tanh", False)])
def test_q_backward_by_hand_gives_autograds_gradients_for_the_first_rows(space, activation, dueling):
    """fqi's hand-written backward: the gradient of sum(grad_q * Q(s, .)) over the first rows of a batch,
    the rows after them (s' beside s) left out: autograd's numbers, bit for bit."""
    torch.manual_seed(0)
    q = QNetwork(SPACES[space], 3, [16, 8], activation, dueling)
    obs = as_tensors(sampled_batch(SPACES[space], 10))
    grad_q = torch.randn(6, 3)
    (grad_q * q(first_rows(obs, 6))).sum().backward()
    expected = [p.grad.clone() for p in q.parameters()]
    q.zero_grad(set_to_none=True)
    with torch.no_grad():
        out, inputs = q.forward_keeping_inputs(obs)
        q.backward_by_hand(inputs, grad_q)
    assert torch.equal(out, q(obs))
    for p, want in zip(q.parameters(), expected, strict=True):
        assert torch.equal(p.grad, want)


@pytest.mark.parametrize("space", ["box", "dict"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_state_action_q_backward_by_hand_gives_autograds_gradients(space, activation):
    torch.manual_seed(0)
    q = StateActionQ(SPACES[space], gym.spaces.Box(-1, 1, (2,)), [16, 8], activation, n=2)
    obs, actions = as_tensors(sampled_batch(SPACES[space], 10)), torch.rand(10, 2) * 2 - 1
    grad_q = torch.randn(2, 10)
    (grad_q * q(obs, actions)).sum().backward()
    expected = [p.grad.clone() for p in q.parameters()]
    q.zero_grad(set_to_none=True)
    with torch.no_grad():
        out, inputs = q.forward_keeping_inputs(obs, actions)
        q.backward_by_hand(inputs, grad_q)
    assert torch.equal(out, q(obs, actions))
    for p, want in zip(q.parameters(), expected, strict=True):
        assert torch.equal(p.grad, want)


def sampled_batch(space: gym.Space, n: int):
    space.seed(0)
    samples = [space.sample() for _ in range(n)]
    if isinstance(space, gym.spaces.Dict):
        return {key: np.stack([s[key] for s in samples]) for key in space.spaces}
    return np.stack(samples)


def first_rows(obs, n: int):
    return {key: value[:n] for key, value in obs.items()} if isinstance(obs, dict) else obs[:n]


def test_layers_compute_what_nn_sequential_does_with_the_same_state_dict():
    """`Layers` skips torch's per-module call machinery, nothing else: the same numbers, bit for bit,
    forward and backward, and checkpoints of either load into the other."""
    from torch import nn

    from rlrun.nets import Layers, mlp

    torch.manual_seed(0)
    fast = mlp(4, [64, 64], 2)
    plain = nn.Sequential(*fast)
    assert isinstance(fast, Layers) and list(fast.state_dict()) == list(plain.state_dict())
    x = torch.randn(10, 4)
    out_fast, out_plain = fast(x), plain(x)
    assert torch.equal(out_fast, out_plain)
    grads = [
        torch.autograd.grad(out.square().sum(), list(net.parameters()))
        for out, net in ((out_fast, fast), (out_plain, plain))
    ]
    assert all(torch.equal(a, b) for a, b in zip(*grads))


CARTPOLE_OBS = gym.spaces.Box(-1.0, 1.0, (4,))
TWO_ACTIONS, BOX_ACTIONS = gym.spaces.Discrete(2), gym.spaces.Box(-1.0, 1.0, (2,))


@pytest.mark.parametrize(
    ("make", "obs_shape"),
    [
        (lambda: ActorCritic(CARTPOLE_OBS, TWO_ACTIONS, [16, 16], "tanh"), (4,)),
        (lambda: ActorCritic(CARTPOLE_OBS, BOX_ACTIONS, [16, 16], "relu", shared=True), (4,)),
        (lambda: Policy(gym.spaces.Box(-1.0, 1.0, (2, 3)), TWO_ACTIONS, [8], "relu"), (2, 3)),
        (lambda: Policy(CARTPOLE_OBS, BOX_ACTIONS, [16, 16], "tanh"), (4,)),
    ],
)
def test_numpy_policy_acts_as_the_torch_policy_and_follows_its_updates(make, obs_shape):
    torch.manual_seed(0)
    net = make()
    policy = net.acting(np.random.default_rng(0))
    assert isinstance(policy, NumpyPolicy)
    obs = np.random.default_rng(1).normal(size=(9, *obs_shape)).astype(np.float32)

    def assert_same_actions():
        with torch.no_grad():
            out = net.distribution(torch.as_tensor(obs))
            expected = out.log_p.argmax(-1) if net.discrete else out.mean
        np.testing.assert_allclose(policy.deterministic(obs), expected.numpy(), rtol=1e-5, atol=1e-6)
        if net.discrete:  # the logits themselves up to softmax's constant, not only their argmax
            logits = policy.forward(obs)
            log_p = out.log_p.numpy()
            np.testing.assert_allclose(logits - logits.max(-1, keepdims=True), log_p - log_p.max(-1, keepdims=True),
                                       atol=1e-5)

    assert_same_actions()
    optimizer = Adam(net.parameters(), lr=0.1)
    dist = net.distribution(torch.as_tensor(obs))
    (dist.log_p if net.discrete else dist.mean).pow(2).sum().backward()
    optimizer.step()  # the parameters change in place, and the numpy views with them
    assert_same_actions()
    net.load_state_dict({k: torch.randn_like(v) for k, v in net.state_dict().items()})
    assert_same_actions()


def test_numpy_policy_samples_follow_the_policy():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = 40_000
    net = ActorCritic(CARTPOLE_OBS, gym.spaces.Discrete(3), [8], "tanh")
    with torch.no_grad():
        net.actor_head.weight.mul_(200)  # far from uniform, so a wrong sampler shows
    obs = np.tile(np.array([[0.3, -0.2, 0.1, 0.5]], dtype=np.float32), (n, 1))
    frequencies = np.bincount(net.acting(rng).sample(obs), minlength=3) / n
    with torch.no_grad():
        p = net.distribution(torch.as_tensor(obs[:1])).log_p.exp()[0].numpy()
    assert p.max() < 0.98 and (np.abs(frequencies - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-9).all()

    gaussian = Policy(CARTPOLE_OBS, BOX_ACTIONS, [8], "tanh", log_std_init=-1.0)
    samples = gaussian.acting(rng).sample(obs)
    with torch.no_grad():
        mean = gaussian.deterministic(torch.as_tensor(obs[:1]))[0].numpy()
    assert samples.dtype == np.float32
    np.testing.assert_allclose(samples.mean(0), mean, atol=4 * math.exp(-1) / math.sqrt(n))
    np.testing.assert_allclose(samples.std(0), [math.exp(-1)] * 2, rtol=0.02)


def test_torch_acts_for_one_hot_or_dict_observations():
    rng = np.random.default_rng(0)
    one_hot = Policy(gym.spaces.Discrete(5), TWO_ACTIONS, [8])
    goals = gym.spaces.Dict({"observation": CARTPOLE_OBS, "desired_goal": CARTPOLE_OBS})
    for net, obs in ((one_hot, np.array([0, 4, 2])), (ActorCritic(goals, TWO_ACTIONS, [8]), {
            "observation": np.zeros((3, 4), np.float32), "desired_goal": np.ones((3, 4), np.float32)})):
        acting = net.acting(rng)
        assert isinstance(acting, TorchActing)
        with torch.no_grad():
            expected = net.deterministic(as_tensors(obs)).numpy()
        np.testing.assert_array_equal(acting.deterministic(obs), expected)
        assert acting.sample(obs).shape == (3,) and set(acting.sample(obs)) <= {0, 1}


@pytest.mark.parametrize("max_norm", [0.5, 1e3])  # the gradients' norm is ~10: clipped, then left as they are
def test_clip_grad_norm_scales_as_torchs_bit_for_bit(max_norm):
    torch.manual_seed(0)
    grads = [torch.randn(64, 4) * 0.3, torch.randn(64), torch.randn(2, 64) * 0.2]
    original = [g.clone() for g in grads]
    expected = [g.clone() for g in grads]
    params, theirs = ([torch.nn.Parameter(torch.zeros_like(g)) for g in grads] for _ in range(2))
    for p, q, g, e in zip(params, theirs, grads, expected):
        p.grad, q.grad = g, e
    without_grad = torch.nn.Parameter(torch.zeros(3))  # skipped, as torch skips it
    torch.nn.utils.clip_grad_norm_([*theirs, without_grad], max_norm)
    clip_grad_norm_([*params, without_grad], max_norm)
    for got, want in zip(grads, expected):
        assert torch.equal(got, want)
    norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads])).item()
    if max_norm < 1:
        assert norm == pytest.approx(max_norm, rel=1e-5)
    else:
        assert all(torch.equal(g, o) for g, o in zip(grads, original))
