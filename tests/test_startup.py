"""What the command's start-up costs: no import rlrun does not use, no garbage collection over torch's objects."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest

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


def test_the_command_pauses_garbage_collection_until_torch_is_imported_then_freezes_what_it_made(tmp_path):
    """Collections during torch's import, and full ones walking its objects after it, cost a short run
    about half a second; a refused command leaves the collector on as it found it."""
    code = textwrap.dedent(
        f"""
        import gc, sys
        sys.argv = ["/venv/bin/rlrun", "algo=reinforce", "total_timesteps=64", "algo.N=2", "eval.episodes=1",
                    "log.progress=none", "hydra.run.dir={tmp_path / "run"}"]
        import rlrun
        assert not gc.isenabled()
        from rlrun.cli import main
        main()
        print(gc.isenabled(), gc.get_freeze_count() > 100_000)
        sys.argv[1:] = ["algo.gamma=1.5"]
        rlrun.pause_gc()
        try:
            main()
        except SystemExit:
            print(gc.isenabled())
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-3:] == ["True", "True", "True"]


def test_the_event_writer_imports_no_cloud_storage_clients():
    """TensorBoard's file layer imports boto3 and fsspec where installed (0.1 s); run folders are local."""
    installed = [name for name in ("boto3", "fsspec") if importlib.util.find_spec(name) is not None]
    if not installed:
        pytest.skip("neither boto3 nor fsspec is installed")
    code = "import sys, rlrun.logger; print(sorted(m for m in ('boto3', 'botocore', 'fsspec') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_finished_run_exits_at_once_with_everything_written(tmp_path):
    """After a run the command skips Python's shutdown (os._exit): the exit code, the console's last
    line, the run's log, its events and files must all be there as after a normal exit; a refused
    value still exits as usual, with its code."""
    from tests.conftest import read_scalars

    run_dir = tmp_path / "run"
    args = ["algo=reinforce", "algo.N=2", "total_timesteps=200", "eval.every=100", "eval.episodes=2",
            "log.progress=none", f"hydra.run.dir={run_dir}"]
    code = "import atexit, sys; atexit.register(print, 'shutdown ran'); from rlrun.cli import command; command()"
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "shutdown ran" not in proc.stdout  # the interpreter's shutdown was skipped
    assert "final eval return" in proc.stdout.strip().splitlines()[-1]
    assert "final eval return" in (run_dir / "cli.log").read_text().strip().splitlines()[-1]
    assert {"summary.json", "model.pt", "best_model.pt"} <= {p.name for p in run_dir.iterdir()}
    assert read_scalars(run_dir)["eval/episodic_return"][-1][0] >= 200

    refused = subprocess.run([sys.executable, "-c", code, "algo.gamma=1.5"], capture_output=True, text=True,
                             timeout=60, check=False, cwd=tmp_path)
    assert refused.returncode == 2
    assert "shutdown ran" in refused.stdout
