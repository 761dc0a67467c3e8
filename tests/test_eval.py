"""`rlrun-eval` and eval videos: the trained policy's return, mp4 files, TensorBoard videos."""

from __future__ import annotations

import json
import re

import imageio_ffmpeg
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlrun import evaluate, evaluation, runner
from tests.conftest import make_config

TINY_RUN = ["total_timesteps=400", "eval.every=0", "eval.episodes=3", "log.progress=none"]


def video_tags(run_dir) -> list[str]:
    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0})  # events in the run folder
    acc.Reload()
    return acc.Tags()["images"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished run that recorded its final evaluation on video (eval.video=true)."""
    run_dir = tmp_path_factory.mktemp("run")
    runner.train(make_config(*TINY_RUN, "eval.video=true"), run_dir)
    return run_dir


def test_training_records_an_eval_video_to_mp4_and_tensorboard(trained):
    summary = json.loads((trained / runner.SUMMARY_FILE).read_text())
    mp4 = trained / evaluation.VIDEO_DIR / f"step_{summary['env_steps']:012d}-episode-0.mp4"
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(mp4))
    assert frames > 1
    assert video_tags(trained) == [evaluation.VIDEO_TAG]


def test_rlrun_eval_reproduces_the_final_evaluation_of_the_run(trained, capsys):
    summary = json.loads((trained / runner.SUMMARY_FILE).read_text())
    evaluate.main([str(trained), "episodes=3"])  # eval.episodes of the run: the same initial states
    out = capsys.readouterr().out
    match = re.search(r"eval return (-?[\d.]+) ± ([\d.]+) over 3 episodes \| step (\d+)", out)
    assert match, out
    assert float(match[1]) == pytest.approx(summary["eval_return_mean"], abs=0.005)
    assert float(match[2]) == pytest.approx(summary["eval_return_std"], abs=0.005)
    assert int(match[3]) == summary["env_steps"]


def test_rlrun_eval_video_writes_an_mp4_of_the_episode_and_logs_it(trained, capsys):
    evaluate.main([str(trained), "episodes=2", "video=true"])
    out = capsys.readouterr().out
    match = re.search(r"video of one episode \(return ([\d.]+)\): (\S+\.mp4)", out)
    assert match, out
    frames, _ = imageio_ffmpeg.count_frames_and_secs(match[2])
    steps = int(float(match[1]))  # CartPole pays 1 per step
    # one frame per step plus the reset's; moviepy 1.0.3 repeats the last one in clips longer than
    # ~0.35 s (it rounds the clip's duration up to a whole frame past the end)
    assert steps + 1 <= frames <= steps + 2
    assert evaluation.VIDEO_TAG in video_tags(trained)


def test_a_run_folder_whose_name_holds_key_value_pairs_is_taken_as_the_path(tmp_path):
    run_dir = tmp_path / "10-00-00_ppo_pendulum_algo.lr=0.01,total_timesteps=2048"
    run_dir.mkdir()
    assert evaluate.parse_args([str(run_dir), "episodes=2"]) == (str(run_dir), {**evaluate.DEFAULTS, "episodes": 2})


@pytest.mark.parametrize(
    "args,shown",
    [
        (["RUN", "episodes=0"], "episodes=0 is not allowed: an integer in [1, 100000]"),
        (["RUN", "video=maybe"], "video='maybe' is not allowed: true or false"),
        (["RUN", "speed=2"], "speed='2' is not allowed: a key among episodes, video, seed, device, which"),
        (
            ["no/such/run"],
            "checkpoint='no/such/run' is not allowed: a run directory holding checkpoints/step_*.pt, or such a file",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(trained, capsys, args, shown):
    with pytest.raises(SystemExit) as exit_:
        evaluate.main([str(trained) if a == "RUN" else a for a in args])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"rlrun-eval: error: {shown}"]
