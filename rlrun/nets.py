"""Networks: MLPs, categorical and Gaussian policies, value functions, and the encoder that turns
an observation batch (an array, or a dict of arrays for a Dict space) into the flat vectors they take."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
ACTIVATION_BACKWARDS = {  # (gradient at an activation's output y, y) -> gradient at its input, by autograd's kernels
    nn.Tanh: torch.ops.aten.tanh_backward,  # grad * (1 - y^2)
    nn.ReLU: lambda grad, y: torch.ops.aten.threshold_backward(grad, y, 0),  # grad where y > 0, else 0
}


class Layers(nn.Sequential):
    """nn.Sequential that calls each layer's `forward` itself. Calling a module runs torch's hook
    machinery, about 3 us a layer: a third of acting in ten envs with a [64, 64] MLP, where evaluation
    spends its time. Same parameters, same state_dict keys, same numbers; layers take no hooks.
    Given a list `inputs`, forward appends the input of each linear layer to it (for the Q networks'
    `backward_by_hand`)."""

    def forward(self, x: torch.Tensor, inputs: list[torch.Tensor] | None = None) -> torch.Tensor:
        for layer in self:
            if inputs is not None and isinstance(layer, nn.Linear):
                inputs.append(x)
            x = layer.forward(x)
        return x


def mlp(in_dim: int, hidden_sizes: Sequence[int], out_dim: int, activation: str = "tanh") -> Layers:
    layers: list[nn.Module] = []
    for width in hidden_sizes:
        layers += [nn.Linear(in_dim, width), ACTIVATIONS[activation]()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return Layers(*layers)


class Categorical:
    """pi(.|s) over Discrete actions from logits [*batch, n]: the three things the algorithms ask of a
    policy distribution. torch.distributions' version validates, broadcasts and samples through
    multinomial, which costs 5-10x more per call at the batch sizes of acting in a few envs."""

    def __init__(self, logits: torch.Tensor):
        # clamped so that a probability of 0 contributes 0 * finite (not 0 * -inf) to the entropy
        self.log_p = logits.log_softmax(-1).clamp(min=torch.finfo(logits.dtype).min)

    def sample(self) -> torch.Tensor:
        """Gumbel-max: argmax_a (log p_a + g_a), g_a = -log e_a, e_a ~ Exp(1), is distributed as p."""
        return (self.log_p - torch.empty_like(self.log_p).exponential_().log()).argmax(-1)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return self.log_p.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> torch.Tensor:
        return -(self.log_p.exp() * self.log_p).sum(-1)


class DiagonalGaussian:
    """pi(.|s) = N(mean, diag(exp(log_std)^2)) over Box actions [*batch, d]; log-probability and
    entropy are of the whole action vector (summed over its d dimensions)."""

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor):
        self.mean, self.log_std = mean, log_std.expand_as(mean)

    def sample(self) -> torch.Tensor:
        return self.mean + self.log_std.exp() * torch.randn_like(self.mean)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        z = (actions - self.mean) * (-self.log_std).exp()
        return (-0.5 * z**2 - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self) -> torch.Tensor:
        return (self.log_std + 0.5 * (1 + math.log(2 * math.pi))).sum(-1)


Distribution = Categorical | DiagonalGaussian


NUMPY_ACTIVATIONS = {nn.Tanh: np.tanh, nn.ReLU: lambda x: np.maximum(x, 0, out=x)}


class NumpyPolicy:
    """A policy's acting, sampled and deterministic, in numpy: for a policy on the CPU over flat
    observations. Torch dispatches an op in 3-5 us and numpy in about 1, and acting in a few envs is a
    dozen ops on a few rows: sampling CartPole actions in 8 envs with a [64, 64] MLP takes 50 us in
    torch and 11 in numpy; with the envs stepped between the calls, as in a rollout, a step of both
    took 150 us with torch's sampling and 61 with numpy's (the env step alone: 40).

    The arrays are views of the parameters' memory: optimiser steps and load_state_dict write the
    parameters in place, so acting always sees the current weights. Nothing here is differentiable;
    the algorithms compute log-probabilities and losses with torch as before. Samples are drawn from
    `rng`, the algorithm's numpy generator (in its checkpoints), not from torch's global one.
    """

    def __init__(self, layers: Sequence[nn.Module], discrete: bool, log_std: torch.Tensor | None, rng):
        self.ops = []
        for layer in layers:
            if isinstance(layer, nn.Linear):
                self.ops.append((layer.weight.detach().numpy().T, layer.bias.detach().numpy()))
            else:
                self.ops.append(NUMPY_ACTIVATIONS[type(layer)])
        self.discrete, self.rng = discrete, rng
        self.log_std = None if log_std is None else log_std.detach().numpy()

    @classmethod
    def of(cls, policy: nn.Module, layers: Sequence[nn.Module], rng) -> NumpyPolicy | None:
        """The numpy policy of `policy` (its `encode`, `discrete` and `log_std`), whose actor is `layers`,
        where it computes what they do: float32 parameters on the CPU, flat Box observations (no one-hot,
        no Dict), Linear, Tanh and ReLU layers; else None."""
        encode, discrete, log_std = policy.encode, policy.discrete, getattr(policy, "log_std", None)
        params = [p for layer in layers for p in layer.parameters()]
        if log_std is not None:
            params.append(log_std)
        if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in params):
            return None
        if encode.parts is not None or encode.n is not None:
            return None
        if not all(isinstance(layer, nn.Linear) or type(layer) in NUMPY_ACTIVATIONS for layer in layers):
            return None
        return cls(layers, discrete, log_std, rng)

    def forward(self, obs: np.ndarray) -> np.ndarray:
        """Logits (discrete) or the mean action (continuous) for a batch [B, *obs_shape]."""
        x = np.asarray(obs, dtype=np.float32).reshape(len(obs), -1)
        for op in self.ops:
            if isinstance(op, tuple):
                weight_t, bias = op
                x = x @ weight_t + bias
            else:
                x = op(x)
        return x

    def sample(self, obs: np.ndarray) -> np.ndarray:
        """a ~ pi(.|s): Gumbel-max on the logits (argmax_a logit_a + g_a, g_a = -log e_a, e_a ~ Exp(1);
        softmax's normaliser is the same for every a, so it drops out) or mean + std * N(0, 1)."""
        out = self.forward(obs)
        if self.discrete:
            return (out - np.log(self.rng.standard_exponential(out.shape, dtype=np.float32))).argmax(-1)
        return out + np.exp(self.log_std) * self.rng.standard_normal(out.shape, dtype=np.float32)

    def deterministic(self, obs: np.ndarray) -> np.ndarray:
        """The argmax action (discrete) or the mean action (continuous)."""
        out = self.forward(obs)
        return out.argmax(-1) if self.discrete else out


class TorchActing:
    """`NumpyPolicy`'s two calls made through the torch policy itself, numpy in and out: where the numpy
    policy does not apply (a GPU; one-hot or Dict observations). Samples come from torch's generator."""

    def __init__(self, policy: nn.Module):
        self.policy, self.device = policy, next(policy.parameters()).device

    @torch.inference_mode()
    def sample(self, obs: np.ndarray) -> np.ndarray:
        return self.policy.distribution(as_tensors(obs, self.device)).sample().cpu().numpy()

    @torch.inference_mode()
    def deterministic(self, obs: np.ndarray) -> np.ndarray:
        return self.policy.deterministic(as_tensors(obs, self.device)).cpu().numpy()


Observations = torch.Tensor | dict[str, torch.Tensor]


def as_tensors(obs, device: torch.device | str | None = None) -> Observations:
    """An observation batch (numpy array, or dict of arrays for a Dict space) as torch tensors on `device`."""
    if isinstance(obs, dict):
        return {key: torch.as_tensor(value, device=device) for key, value in obs.items()}
    return torch.as_tensor(obs, device=device)


class ObsEncoder(nn.Module):
    """Observations as flat float vectors; Discrete observations become one-hot, and a Dict
    observation is the concatenation of its keys' encodings in the space's key order."""

    def __init__(self, space: gym.Space):
        super().__init__()
        self.parts = None
        if isinstance(space, gym.spaces.Dict):
            self.parts = nn.ModuleDict({key: ObsEncoder(sub) for key, sub in space.spaces.items()})
            self.dim = sum(part.dim for part in self.parts.values())
            return
        self.n = int(space.n) if isinstance(space, gym.spaces.Discrete) else None
        self.obs_dims = len(space.shape)
        self.dim = self.n if self.n is not None else int(np.prod(space.shape))

    def forward(self, obs: Observations) -> torch.Tensor:
        """[*batch, *obs_shape] (or a dict of such, by key) -> [*batch, dim], for any number of batch dimensions."""
        if self.parts is not None:
            return torch.cat([part(obs[key]) for key, part in self.parts.items()], -1)
        if self.n is not None:
            return nn.functional.one_hot(obs.long(), self.n).float()
        if self.obs_dims > 1:
            obs = obs.flatten(-self.obs_dims)
        return obs.float()


class Policy(nn.Module):
    """pi_theta(a|s): categorical for Discrete actions, diagonal Gaussian with a state-independent
    log std for Box actions (actions are clipped to the bounds by the caller, not squashed)."""

    def __init__(self, obs_space: gym.Space, action_space: gym.Space, hidden_sizes, activation="tanh", log_std_init=-0.5):
        super().__init__()
        self.encode = ObsEncoder(obs_space)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        out = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        self.body = mlp(self.encode.dim, hidden_sizes, out, activation)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((out,), float(log_std_init)))

    def distribution(self, obs: Observations) -> Distribution:
        out = self.body(self.encode(obs))
        return Categorical(out) if self.discrete else DiagonalGaussian(out, self.log_std)

    def deterministic(self, obs: Observations) -> torch.Tensor:
        """The argmax action (discrete) or the mean action (continuous)."""
        out = self.body(self.encode(obs))
        return out.argmax(-1) if self.discrete else out

    def acting(self, rng: np.random.Generator) -> NumpyPolicy | TorchActing:
        """What acts for this policy: in numpy (`NumpyPolicy`, sampling from `rng`) where it applies, else torch."""
        return NumpyPolicy.of(self, list(self.body), rng) or TorchActing(self)


class ValueFunction(nn.Module):
    """V_phi(s)."""

    def __init__(self, obs_space: gym.Space, hidden_sizes, activation="tanh"):
        super().__init__()
        self.encode = ObsEncoder(obs_space)
        self.body = mlp(self.encode.dim, hidden_sizes, 1, activation)

    def forward(self, obs: Observations) -> torch.Tensor:
        return self.body(self.encode(obs)).squeeze(-1)


def _trunk(in_dim: int, hidden_sizes: Sequence[int], activation: str) -> tuple[Layers, int]:
    """Hidden layers only (no output layer), orthogonally initialised; returns (layers, out width)."""
    layers: list[nn.Module] = []
    for width in hidden_sizes:
        layers += [_orthogonal(nn.Linear(in_dim, width), np.sqrt(2)), ACTIVATIONS[activation]()]
        in_dim = width
    return Layers(*layers), in_dim


def _orthogonal(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class ActorCritic(nn.Module):
    """pi_theta(a|s) and V_phi(s): two networks, or one shared body with two heads (`shared`).

    Orthogonal initialisation with a small policy head starts the policy near uniform and keeps
    early policy-gradient steps small, which on-policy methods are sensitive to. Categorical or
    diagonal Gaussian (state-independent log std) policy, as `Policy`.
    """

    def __init__(self, obs_space, action_space, hidden_sizes, activation="tanh", log_std_init=0.0, shared=False):
        super().__init__()
        self.encode = ObsEncoder(obs_space)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.shared = shared
        out = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        self.actor_body, width = _trunk(self.encode.dim, hidden_sizes, activation)
        self.critic_body = self.actor_body if shared else _trunk(self.encode.dim, hidden_sizes, activation)[0]
        self.actor_head = _orthogonal(nn.Linear(width, out), 0.01)
        self.critic_head = _orthogonal(nn.Linear(width, 1), 1.0)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((out,), float(log_std_init)))

    def _distribution(self, out: torch.Tensor) -> Distribution:
        return Categorical(out) if self.discrete else DiagonalGaussian(out, self.log_std)

    def forward(self, obs: Observations) -> tuple[Distribution, torch.Tensor]:
        """(pi(.|s), V(s)) for a batch of observations of any batch shape."""
        x = self.encode(obs)
        actor_features = self.actor_body(x)
        critic_features = actor_features if self.shared else self.critic_body(x)
        return self._distribution(self.actor_head(actor_features)), self.critic_head(critic_features).squeeze(-1)

    def distribution(self, obs: Observations) -> Distribution:
        return self._distribution(self.actor_head(self.actor_body(self.encode(obs))))

    def value(self, obs: Observations) -> torch.Tensor:
        return self.critic_head(self.critic_body(self.encode(obs))).squeeze(-1)

    def deterministic(self, obs: Observations) -> torch.Tensor:
        """The argmax action (discrete) or the mean action (continuous)."""
        out = self.actor_head(self.actor_body(self.encode(obs)))
        return out.argmax(-1) if self.discrete else out

    def acting(self, rng: np.random.Generator) -> NumpyPolicy | TorchActing:
        """What acts for pi: in numpy (`NumpyPolicy`, sampling from `rng`) where it applies, else torch."""
        return NumpyPolicy.of(self, [*self.actor_body, self.actor_head], rng) or TorchActing(self)


class ActionAdapter:
    """Turns a batch of policy actions (torch) into what the env takes (numpy, clipped to Box bounds)."""

    def __init__(self, action_space: gym.Space):
        self.box = isinstance(action_space, gym.spaces.Box)
        if self.box:
            self.low, self.high = action_space.low, action_space.high

    def __call__(self, actions: torch.Tensor | np.ndarray) -> np.ndarray:
        a = actions if isinstance(actions, np.ndarray) else actions.cpu().numpy()
        return np.clip(a, self.low, self.high) if self.box else a


class QNetwork(nn.Module):
    """Q_phi(s, .) for Discrete actions: one output per action.

    dueling: the last layer gives V(s) and an advantage per action, and Q(s, a) = V(s) + A(s, a) -
    mean_a' A(s, a'). Where every action keeps the episode going (CartPole near upright), Q is about
    1 / (1 - gamma) for all of them and the greedy action rests on differences of a few percent of
    it; written apart from V, those differences are not lost in fitting the large common part."""

    def __init__(self, obs_space: gym.Space, n_actions: int, hidden_sizes, activation="relu", dueling=False):
        super().__init__()
        self.encode = ObsEncoder(obs_space)
        self.dueling = dueling
        self.body = mlp(self.encode.dim, hidden_sizes, n_actions + dueling, activation)

    def forward(self, obs: Observations) -> torch.Tensor:
        """[*batch, *obs_shape] -> [*batch, n_actions]."""
        return self.q_of(self.body(self.encode(obs)))

    def q_of(self, out: torch.Tensor) -> torch.Tensor:
        """Q from the MLP's last layer: that layer itself, or V + A - mean A for the dueling head."""
        if not self.dueling:
            return out
        value, advantages = out[..., :1], out[..., 1:]
        return value + advantages - advantages.mean(-1, keepdim=True)

    def forward_keeping_inputs(self, obs: Observations) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Q_phi(s, .) for a batch [B, *obs_shape], and the input of each linear layer, which
        `backward_by_hand` takes. No graph is recorded: call it under torch.no_grad()."""
        inputs: list[torch.Tensor] = []
        return self.q_of(self.body.forward(self.encode(obs), inputs)), inputs

    def backward_by_hand(self, inputs: list[torch.Tensor], grad_q: torch.Tensor) -> None:
        """Sets each parameter's .grad to the gradient of sum(grad_q * Q_phi(s, .)) over the first
        len(grad_q) states of the batch that `forward_keeping_inputs` gave `inputs` for.

        Backpropagation through the MLP written out: the products and kernels autograd uses (the same
        numbers), without its graph, whose bookkeeping costs as much as the products in fqi's small steps.
        Rows past len(grad_q) (fqi's s' beside s) are left out of every product."""
        if self.dueling:  # Q = V + A - mean A
            grad_q = torch.cat([grad_q.sum(-1, keepdim=True), grad_q - grad_q.mean(-1, keepdim=True)], -1)
        rows, grad, layers = len(grad_q), grad_q, list(self.body)  # Linear, activation, ..., Linear
        for i in reversed(range(0, len(layers), 2)):
            linear, x = layers[i], inputs[i // 2][:rows]
            linear.weight.grad = grad.t() @ x
            linear.bias.grad = grad.sum(0)
            if i:  # through the activation whose output is x
                grad = ACTIVATION_BACKWARDS[type(layers[i - 1])](grad @ linear.weight, x)


class StateActionQ(nn.Module):
    """`n` independent Q_j(s, a) networks over a state and a continuous action, evaluated as one
    batched matrix product per layer (cheaper than n separate networks for the many (s, a) pairs
    a CEM search evaluates)."""

    def __init__(self, obs_space: gym.Space, action_space: gym.Space, hidden_sizes, activation="relu", n=2):
        super().__init__()
        self.encode = ObsEncoder(obs_space)
        sizes = [self.encode.dim + int(np.prod(action_space.shape)), *hidden_sizes, 1]
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(sizes):
            bound = 1 / np.sqrt(fan_in)  # nn.Linear's default initialisation range
            self.weights.append(nn.Parameter(torch.empty(n, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n, 1, fan_out).uniform_(-bound, bound)))
        self.activation = ACTIVATIONS[activation]()
        self.n = n

    def forward(self, obs: Observations, actions: torch.Tensor, first: int | None = None) -> torch.Tensor:
        """obs [*batch, *obs_shape] and flat actions [*batch, action_dim] -> [n, *batch]; with `first`,
        only Q_1 .. Q_first -> [first, *batch]."""
        n = self.n if first is None else first
        x = torch.cat([self.encode(obs), actions], -1)
        return self.layers(x.reshape(1, -1, x.shape[-1]).expand(n, -1, -1)).reshape(n, *x.shape[:-1])

    def forward_keeping_inputs(self, obs: Observations, actions: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Q_j(s, a) for a batch [B, *obs_shape] and actions [B, action_dim] -> [n, B], and each layer's
        input, which `backward_by_hand` takes. No graph is recorded: call it under torch.no_grad()."""
        x, inputs = torch.cat([self.encode(obs), actions], -1), []
        return self.layers(x.unsqueeze(0).expand(self.n, -1, -1), inputs).squeeze(-1), inputs

    def layers(self, h: torch.Tensor, inputs: list[torch.Tensor] | None = None) -> torch.Tensor:
        """[n', B, in] through Q_1 .. Q_n' (n' <= n), appending each layer's input to `inputs` if given."""
        n, last = len(h), len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            if n < self.n:  # sliced only then: a slice is one more node in the backward pass of training
                w, b = w[:n], b[:n]
            if inputs is not None:
                inputs.append(h)
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = self.activation(h)
        return h

    def backward_by_hand(self, inputs: list[torch.Tensor], grad_q: torch.Tensor) -> None:
        """Sets each parameter's .grad to the gradient of sum(grad_q * Q(s, a)), grad_q [n, B]: as
        QNetwork.backward_by_hand, one batched product per layer for the n networks."""
        grad = grad_q.unsqueeze(-1)
        for i in reversed(range(len(self.weights))):
            x = inputs[i]
            self.weights[i].grad = x.transpose(1, 2).bmm(grad)
            self.biases[i].grad = grad.sum(1, keepdim=True)
            if i:  # through the activation whose output is x
                grad = ACTIVATION_BACKWARDS[type(self.activation)](grad.bmm(self.weights[i].transpose(1, 2)), x)


class Optimizer:
    """What rlrun's optimisers share, without torch.optim: torch's Optimizer imports torch._dynamo the
    first time it adds a parameter group or steps (about 1 s on a CPU, as long as `import torch`
    itself), and nothing rlrun does needs dynamo.

    One parameter group to start with (more may be appended to `param_groups`, as actor_critic's
    critic_lr does); each group's learning rate is read from `param_groups[i]["lr"]` at every step, so
    schedules set it there. `state_dict` has torch.optim's layout (state by parameter index, groups with
    their hyperparameters), so checkpoints load in both directions. A subclass names its
    `hyperparameters` (a group's keys besides params) and its per-parameter `moments` (state tensors
    besides the step count), and writes `fixed` (the group entries torch.optim adds for options rlrun
    leaves off) and `update`, the step of one group's parameters once their step counts are raised."""

    hyperparameters: tuple[str, ...] = ("lr",)
    moments: tuple[str, ...] = ()

    def __init__(self, params, **hyperparameters):
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        self.param_groups = [{"params": params, **hyperparameters}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def zero_grad(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def fixed(self) -> dict:
        """A state_dict group's entries for the options torch.optim has and rlrun leaves off."""
        return {}

    def new_step(self, p: torch.Tensor) -> torch.Tensor:
        """A parameter's step count as torch.optim keeps it: a float scalar tensor."""
        return torch.tensor(0.0, dtype=_scalar_dtype())

    def new_state(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        """torch.optim's, made at a parameter's first step: the step count and zeroed moments."""
        zeros = {name: torch.zeros_like(p, memory_format=torch.preserve_format) for name in self.moments}
        self.state[p] = {"step": self.new_step(p), **zeros}
        return self.state[p]

    @torch.no_grad()
    def step(self) -> None:
        """Each group's parameters that have a gradient: their states (made at their first step), the step
        counts raised, then the subclass's `update`."""
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [self.state[p] if p in self.state else self.new_state(p) for p in params]
            torch._foreach_add_([s["step"] for s in states], 1)
            self.update(group, params, [p.grad for p in params], states)

    def update(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor],
               states: list[dict[str, torch.Tensor]]) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        index: dict[torch.Tensor, int] = {}
        groups = []
        for group in self.param_groups:
            ids = [index.setdefault(p, len(index)) for p in group["params"]]
            groups.append({**{k: group[k] for k in self.hyperparameters}, **self.fixed(), "params": ids})
        return {"state": {index[p]: dict(s) for p, s in self.state.items()}, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """From this class or its torch.optim counterpart (checkpoints of earlier rlrun versions): the
        moments, step counts and hyperparameters."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(self.param_groups, saved_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match the size of optimizer's group")
        by_id = {i: p for g, s in zip(self.param_groups, saved_groups) for i, p in zip(s["params"], g["params"])}
        state = {}
        for i, saved in state_dict["state"].items():
            p = by_id[i]
            moments = {name: saved[name].to(dtype=p.dtype, device=p.device, copy=True) for name in self.moments}
            state[p] = {"step": self.loaded_step(saved["step"], p), **moments}
        for group, saved in zip(self.param_groups, saved_groups):
            group.update({k: tuple(saved[k]) if isinstance(saved[k], list) else saved[k] for k in self.hyperparameters})
        self.state = state

    def loaded_step(self, step: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return step.clone()


class Adam(Optimizer):
    """Adam, the same arithmetic as torch.optim.Adam and the same state_dict (see Optimizer).

    `fused=True` runs torch's fused kernel, as torch.optim.Adam(fused=True) does, where this torch
    has it for the parameters' device; otherwise (and with fused=False) the element-wise steps of
    torch's single-tensor Adam, as torch.optim.Adam(foreach=False). Either way the results are
    bit-identical to that torch.optim.Adam's, and checkpoints load in both directions."""

    hyperparameters = ("lr", "betas", "eps")
    moments = ("exp_avg", "exp_avg_sq")

    def __init__(
        self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, fused: bool = False
    ):
        params = list(params)
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps)
        self.fused = fused and _fused_adam_works(params[0])

    def fixed(self) -> dict:
        return {
            "weight_decay": 0, "amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
            "differentiable": False, "fused": True if self.fused else None, "decoupled_weight_decay": False,
        }

    def new_step(self, p: torch.Tensor) -> torch.Tensor:
        """On the parameter's device for the fused kernel only, as torch.optim.Adam keeps it."""
        return torch.zeros((), dtype=torch.float32, device=p.device) if self.fused else super().new_step(p)

    def loaded_step(self, step: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return step.to(dtype=torch.float32, device=p.device, copy=True) if self.fused else step.clone()

    def update(self, group, params, grads, states) -> None:
        exp_avgs, exp_avg_sqs = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
        steps = [s["step"] for s in states]
        lr, (beta1, beta2), eps = float(group["lr"]), group["betas"], group["eps"]
        if self.fused:
            torch._fused_adam_(
                params, grads, exp_avgs, exp_avg_sqs, [], steps,
                lr=lr, beta1=beta1, beta2=beta2, weight_decay=0.0, eps=eps, amsgrad=False, maximize=False,
            )
            return
        # torch's single-tensor Adam, op for op, each op applied to all tensors at once
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
        counts = [s.item() for s in steps]
        denoms = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denoms, [(1 - beta2**n) ** 0.5 for n in counts])
        torch._foreach_add_(denoms, eps)
        torch._foreach_addcdiv_(params, exp_avgs, denoms, [-(lr / (1 - beta1**n)) for n in counts])


class RMSprop(Optimizer):
    """RMSprop as A2C's paper and Stable-Baselines3's A2C use it: theta <- theta - lr g / (sqrt(v) + eps),
    v <- alpha v + (1 - alpha) g^2, no momentum, not centred. The same arithmetic as
    torch.optim.RMSprop(foreach=False), op for op, bit for bit, and the same state_dict (see Optimizer)."""

    hyperparameters = ("lr", "alpha", "eps")
    moments = ("square_avg",)

    def __init__(self, params, lr: float, alpha: float = 0.99, eps: float = 1e-8):
        super().__init__(params, lr=lr, alpha=alpha, eps=eps)

    def fixed(self) -> dict:
        return {
            "momentum": 0, "centered": False, "weight_decay": 0, "capturable": False, "foreach": None,
            "maximize": False, "differentiable": False,
        }

    def update(self, group, params, grads, states) -> None:
        square_avgs = [s["square_avg"] for s in states]
        torch._foreach_mul_(square_avgs, group["alpha"])
        torch._foreach_addcmul_(square_avgs, grads, grads, 1 - group["alpha"])
        avgs = torch._foreach_sqrt(square_avgs)
        torch._foreach_add_(avgs, group["eps"])
        torch._foreach_addcdiv_(params, grads, avgs, -float(group["lr"]))


def _scalar_dtype() -> torch.dtype:
    """The dtype of torch.optim's step counts (Adam's off its fused path)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


_FUSED_WORKS: dict[tuple[str, torch.dtype], bool] = {}


def _fused_adam_works(p: torch.Tensor) -> bool:
    """Whether this torch has the fused Adam kernel for `p`'s device and dtype (older ones lack it on the CPU)."""
    key = (p.device.type, p.dtype)
    if key not in _FUSED_WORKS:
        try:
            t = [torch.zeros(1, dtype=p.dtype, device=p.device) for _ in range(4)]
            step = torch.ones((), dtype=torch.float32, device=p.device)
            torch._fused_adam_(
                [t[0]], [t[1]], [t[2]], [t[3]], [], [step],
                lr=0.1, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False,
            )
            _FUSED_WORKS[key] = True
        except (RuntimeError, NotImplementedError, AttributeError):
            _FUSED_WORKS[key] = False
    return _FUSED_WORKS[key]


def adam(params, lr: float) -> Adam:
    """Adam with torch's fused kernel where this torch has it for the device: for the small
    networks of many quick gradient steps, the per-step overhead is most of the cost."""
    return Adam(params, lr=lr, fused=True)


def clip_grad_norm_(parameters, max_norm: float) -> None:
    """Scale the gradients of `parameters` in place so that their global 2-norm is at most `max_norm`,
    skipping parameters without one, as torch.nn.utils.clip_grad_norm_ does: its arithmetic, the same
    numbers, written out for the one device and dtype of these networks without its per-call grouping
    and checks (torch's took 88 us a call on fqi's [256, 256] Q, this 37 us, in gradient steps of ~1 ms)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
    torch._foreach_mul_(grads, torch.clamp(max_norm / (norm + 1e-6), max=1.0))
