"""A LoRA study's runs as jobs, spread over GPUs and nodes by submitit.

Each (arm, seed) run is one job that trains, scores and writes its result into
the run cache (``lora_runs.run_arm``); the study then reads every result back.
Runs already in the cache are never submitted, so a study killed half-way (or
one of whose jobs failed) resumes with its finished runs. submitit launches and
watches the jobs: its local executor on one machine (one GPU per job when GPUs
are visible, ``workers`` jobs at a time), Slurm job arrays on a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness import cache
from harness.errors import BadInputError
from harness.lora import runs as lora_runs

EXECUTORS = ("serial", "local", "slurm")


@dataclass(frozen=True)
class JobSettings:
    executor: str = "serial"
    workers: int = 1  # jobs at once: local (each on its own GPU when there are GPUs), or the Slurm array's limit
    folder: Path | None = None  # submitit's logs and pickles (default: the harness cache)
    slurm: dict = field(default_factory=dict)  # e.g. {"slurm_partition": "gpu", "timeout_min": 600}

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise BadInputError(f"executor must be one of {EXECUTORS}, got {self.executor!r}")
        if self.workers < 1:
            raise BadInputError(f"workers must be at least 1, got {self.workers}")

    def log_folder(self) -> Path:
        return Path(self.folder) if self.folder else cache.cache_root() / "submitit"


class RunsFailedError(RuntimeError):
    """Some runs of a study failed or were killed; the finished ones are in the cache."""


def pending_runs(study) -> list[tuple]:
    """The (arm, seed) runs of ``study`` whose result is not in the cache yet."""
    return [
        (arm, seed)
        for arm, seed in study.jobs()
        if lora_runs.cached_result(study.base, arm, seed, study.settings) is None
    ]


def _gpu_slots(workers: int) -> list[tuple[int, ...]]:
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return [()] * workers
    return [(index % count,) for index in range(workers)]


def submit(study, settings: JobSettings) -> list:
    """Submit every pending run of ``study`` and return the submitit jobs (without waiting for them).

    Local: ``workers`` executors, each bound to one GPU when there are GPUs, take the runs in turn; their
    jobs start at once, so ``workers`` should not exceed what the machine can run side by side. Slurm: one
    job array, at most ``workers`` of its jobs running at a time.
    """
    import submitit

    pending = pending_runs(study)
    if not pending:
        return []
    folder = settings.log_folder() / "%j"
    arguments = (
        [study.base] * len(pending),
        [arm for arm, _ in pending],
        [seed for _, seed in pending],
        [study.settings] * len(pending),
    )
    if settings.executor == "slurm":
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        executor.update_parameters(
            slurm_array_parallelism=settings.workers, gpus_per_node=1, name=f"lora-{study.name}", **settings.slurm
        )
        return executor.map_array(lora_runs.run_arm_quietly, *arguments)
    slots = _gpu_slots(settings.workers)
    executors = []
    for gpus in slots:
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(visible_gpus=gpus, gpus_per_node=len(gpus), timeout_min=24 * 60)
        executors.append(executor)
    jobs = [
        executors[index % len(executors)].submit(lora_runs.run_arm_quietly, *(values[index] for values in arguments))
        for index in range(len(pending))
    ]
    for job in jobs:
        # a local job writes its result before its process ends, on this machine's disk: once the process is gone
        # a missing result is a failure, not a slow file system (submitit would wait 15 s for it, as for a cluster)
        job._results_timeout_s = 0
    return jobs


POLL_SECONDS = 0.2  # how often ``wait`` asks whether a job has ended (submitit keeps a cluster's answers a while)


def wait(jobs: list, progress: bool = True) -> list[str]:
    """Wait for every job; return a line for each that failed or was killed."""
    import submitit
    from tqdm.auto import tqdm

    failures = []
    with tqdm(total=len(jobs), desc="LoRA runs (jobs)", disable=not progress or not jobs) as bar:
        for job in submitit.helpers.as_completed(jobs, poll_frequency=POLL_SECONDS):
            try:
                job.result()
            except Exception as error:  # a failed or killed job: the study reports it and resumes later
                first = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
                failures.append(f"job {job.job_id}: {first}")
            bar.update()
    return failures


def run_study_jobs(study, settings: JobSettings, progress: bool = True) -> int:
    """Every pending run of ``study`` as a job, then every result read back (``study.run``).
    Returns how many runs were submitted; raises RunsFailedError when any failed."""
    jobs = submit(study, settings)
    failures = wait(jobs, progress)
    if failures:
        raise RunsFailedError(
            f"{len(failures)} of {len(jobs)} runs of the LoRA study of {study.name} failed or were killed "
            f"({'; '.join(failures[:3])}); their logs are in {settings.log_folder()}. Run the study again: the "
            f"{len(jobs) - len(failures)} finished runs are in the cache and are not trained again"
        )
    return len(jobs)
