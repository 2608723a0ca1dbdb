"""A LoRA study's runs as submitit jobs: the local executor trains them, and a killed run is the only one redone."""

import os
import signal
import time
from pathlib import Path

import pytest

from harness import config
from harness.lora import arm_jobs
from harness.lora import study as lora_study
from harness.sources import models

SMALL = dict(
    steps=2,
    seeds=(0,),
    train_examples=16,
    batch_size=2,
    eval_limit=2,
    likelihood_items=2,
    retention_samples=2,
    max_gen_toks=4,
)


def _kill(job, timeout: float = 60.0) -> None:
    """SIGKILL a local job's controller and the task it started (as a lost node would), once the task runs."""
    controller = job._process.pid  # the local executor's controller process; its child runs the run
    children = Path(f"/proc/{controller}/task/{controller}/children")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (children.exists() and children.read_text().split()):
        time.sleep(0.05)
    for pid in [*map(int, children.read_text().split()), controller]:
        os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="killing a job's processes reads /proc (Linux)")
@pytest.mark.parametrize("micro_pair", ["olmo2"], indirect=True)
def test_a_studys_runs_are_local_jobs_and_a_killed_one_is_the_only_one_trained_again(
    micro_pair, isolated_cache, tmp_path
):
    spec = models.custom_pair(str(micro_pair.base_dir), str(micro_pair.sft_dir), dtype="float32")
    settings = arm_jobs.JobSettings("local", workers=2, folder=tmp_path / "jobs")
    study = lora_study.study_pair(
        spec,
        None,
        config.thresholds_for("tiny_olmo2"),
        "cpu",
        "float32",
        masks=["100", "111"],
        overrides=SMALL,
        jobs_settings=settings,
        progress=False,
    )
    jobs = arm_jobs.submit(study, settings)
    assert len(jobs) == 2
    _kill(jobs[1])  # killed as a node failure would: no result reaches the cache
    failures = arm_jobs.wait(jobs, progress=False)
    assert len(failures) == 1 and failures[0].startswith(f"job {jobs[1].job_id}")
    (left,) = arm_jobs.pending_runs(study)
    assert left[0].label == "111"
    finished = sorted(isolated_cache.rglob("result.json"))
    stamps = [path.stat().st_mtime_ns for path in finished]
    assert arm_jobs.run_study_jobs(study, settings, progress=False) == 1  # only the killed run is submitted
    assert [path.stat().st_mtime_ns for path in finished] == stamps  # the finished runs were not trained again
    study.run(progress=False)  # every result read back from the cache: nothing left to submit
    assert sorted(study.scores().index) == ["100", "111"] and arm_jobs.pending_runs(study) == []


def test_an_unknown_executor_is_refused():
    with pytest.raises(ValueError, match="executor must be one of"):
        arm_jobs.JobSettings("kubernetes")
