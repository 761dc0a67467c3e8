"""What a run imports: nothing that costs seconds and that rlrun does not use."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Training, evaluating, saving and loading checkpoints with reinforce (two optimizers), ppo (gradient
# clipping, lr annealed through param_groups) and fqi (the fused kernel), in one fresh process.
RUNS = textwrap.dedent(
    """
    import sys, tempfile
    from pathlib import Path
    from rlrun import checkpoint, runner
    from rlrun.build import build
    from tests.conftest import make_config

    tiny = ["total_timesteps=256", "eval.every=128", "eval.episodes=2", "checkpoint.every=128", "log.progress=none"]
    for algo in (["algo=reinforce", "algo.N=4", "algo.baseline=value"],
                 ["algo=ppo", "algo.num_envs=2", "algo.T=32", "algo.minibatch_size=32"],
                 ["algo=fqi", "algo.N=64", "algo.learning_starts=64", "algo.K=1", "algo.S=2", "algo.lr_anneal_steps=256"]):
        cfg = make_config(*algo, *tiny)
        run_dir = Path(tempfile.mkdtemp())
        runner.train(cfg, run_dir)
        build(cfg).load_state_dict(checkpoint.load_rlrun_file(checkpoint.latest_checkpoint(run_dir), "a checkpoint")["algo"])
    print(sorted(m for m in sys.modules if m.startswith(("torch._dynamo", "torch._inductor"))))
    """
)


def test_training_runs_do_not_import_torch_dynamo():
    """torch.optim's Optimizer imports torch._dynamo (about 1 s, as long as torch itself) on its first
    parameter group; rlrun's Adam does not, and nothing else a run does may bring it back."""
    proc = subprocess.run([sys.executable, "-c", RUNS], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
