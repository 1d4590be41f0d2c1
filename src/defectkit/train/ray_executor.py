"""The grid on Ray: every (arch, fold) job a Ray task, spread over the GPUs and nodes of a cluster.

    python src/run.py --config configs/elpv.yaml --executor ray                       # this machine
    python src/run.py --config configs/elpv.yaml --executor ray --gpus-per-job 0.5    # 2 jobs per GPU
    python src/run.py --config configs/elpv.yaml --executor ray --ray-address auto    # a running cluster

A task is `train.train_fold` under the same lock, recipe check and resume rules as the local
executor; it writes its whole console output to models/<exp>/fold<k>.log, so a job that ran on
another node can be read afterwards. Every node must see the same working folder (a shared
filesystem) at the same path: a task first checks that it sees the driver's folds file (same
hash), and otherwise fails naming its node and the path. A failed job does not stop the
others; the driver names it with its log's tail at the end.

`job_body` is the task itself, importable and testable without Ray.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from defectkit.core.checks import InputError
from defectkit.core.config import Config
from defectkit.core.fileio import file_hash
from defectkit.core.layout import REFIT, Layout
from defectkit.core.plugins import load_plugins
from defectkit.train.fold import JobOptions, train_job

SRC = Path(__file__).resolve().parents[2]  # src/, which holds the package defectkit
LOG_TAIL = 15  # lines of a failed job's log shown by the driver
CONNECT_TIMEOUT_S = 5.0  # to reach a cluster's address before Ray itself retries


@dataclass
class RayOptions:
    """How the grid is spread (run flags: they never change a recipe's hash)."""

    address: str | None = None  # None: start a local Ray on this machine (all its CPUs and GPUs)
    gpus_per_job: float | None = None  # None: 1 when the cluster has GPUs, else 0
    cpus_per_job: float | None = None  # None: the cluster's CPUs per GPU (with GPUs), else 1


@dataclass
class JobResult:
    arch: str
    fold: int | str
    exp: str
    ok: bool
    node: str
    secs: float
    oof_auc: float | None = None
    best_epoch: int | None = None
    error: str = ""
    log: str = ""

    def line(self) -> str:
        where = f"{self.secs / 60:.1f} min on {self.node}"
        if self.ok and self.oof_auc is None:
            return f"{self.exp} fold {self.fold} (refit): test predictions, {where}"
        if self.ok:
            return f"{self.exp} fold {self.fold}: OOF AUC {self.oof_auc:.4f} (best epoch {self.best_epoch}), {where}"
        return f"{self.exp} fold {self.fold}: FAILED ({self.error}), {where}"


def check_shared_workdir(cfg: Config, base: Path, driver_hash: str, node: str) -> None:
    """The task's view of the working folder must be the driver's: the same folds file."""
    path = Layout(base).folds_file(cfg.competition)
    if not path.exists():
        raise InputError(f"node {node}: {path} not found; every node must see the driver's working folder at the "
                         "same path (a shared filesystem)")
    seen = file_hash(path)
    if seen != driver_hash:
        raise InputError(f"node {node}: {path} has hash {seen}, the driver's has {driver_hash}; every node must see "
                         "the driver's working folder (a shared filesystem), not a copy of its own")


@contextlib.contextmanager
def output_to(path: Path):
    """Send this process's stdout and stderr (Python's and the C library's) to `path`, appended."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as f:
        for s in (sys.stdout, sys.stderr):
            s.flush()
        saved = os.dup(1), os.dup(2)
        old = sys.stdout, sys.stderr
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        sys.stdout = sys.stderr = f
        try:
            yield f
        finally:
            f.flush()
            sys.stdout, sys.stderr = old
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def log_tail(path: Path, n: int = LOG_TAIL) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return f"(no log at {path})"


def worker_job(*args) -> JobResult:
    """job_body as a Ray worker runs it: the plugins loaded first (a worker is a fresh process, and a
    job of a plugin's member kind needs its registration there too)."""
    load_plugins()
    return job_body(*args)


def job_body(cfg: Config, arch: str, fold: int | str, base: str, jobs: JobOptions) -> JobResult:
    """One (arch, fold) job as a Ray task runs it: check the shared folder, train (resuming an
    interrupted fold), all output into models/<exp>/fold<k>.log. Never raises: a failure is a
    JobResult with ok=False, its one-line error and its log's tail."""
    t0, node = time.time(), socket.gethostname()
    exp = cfg.exp_name(arch)
    paths = Layout(base).fold(exp, fold)
    if jobs.threads and not cfg.recipe.threads:
        cfg = dataclasses.replace(cfg, recipe=dataclasses.replace(cfg.recipe, threads=jobs.threads))
    try:
        with output_to(paths.job_log) as log:
            print(f"=== {exp} fold {fold} on {node} (pid {os.getpid()}) at {time.strftime('%Y-%m-%d %H:%M:%S')}; "
                  f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')!r}", file=log)
            try:
                check_shared_workdir(cfg, Path(base), jobs.folds_hash, node)
                meta = train_job(cfg, arch, fold, Path(base), dataclasses.replace(jobs, progress=False))
            except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the grid
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                if not isinstance(e, (InputError, OSError)):
                    traceback.print_exc(file=log)
                    msg = f"{type(e).__name__}: {msg}"
                print(f"error: {msg}", file=log)
                return JobResult(arch, fold, exp, False, node, time.time() - t0, error=msg[:300],
                                 log=log_tail(paths.job_log))
    except OSError as e:  # the log itself cannot be written (a read-only or missing shared folder)
        return JobResult(arch, fold, exp, False, node, time.time() - t0, error=f"{e.filename}: {e.strerror}")
    return JobResult(arch, fold, exp, True, node, time.time() - t0, meta.oof_auc, meta.best_epoch)


def init_ray(address: str | None, **kw):
    """Connect to a cluster at `address`, or start Ray on this machine (`kw`: ray.init's
    num_cpus, num_gpus, ...); reuse a running session. Workers import this repository's
    modules from src/ (the same path on every node)."""
    import ray
    if not ray.is_initialized():
        check_reachable(address)
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}}
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, runtime_env=env,
                     logging_level="warning", **kw)
        except ConnectionError as e:
            raise InputError(f"--ray-address {address}: no Ray cluster there ({str(e).splitlines()[0][:120]}); "
                             "start one (ray start --head) or leave --ray-address out") from None
    return ray


def check_reachable(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Before Ray retries for minutes: does anything answer at HOST:PORT (ray://HOST:PORT)?"""
    if not address or address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--ray-address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise InputError(f"--ray-address {address}: nothing answers at {host}:{port} within {timeout:g} s "
                         f"({e.strerror or e}); start the cluster (ray start --head) or check the address") from None


def job_resources(ray, opts: RayOptions) -> tuple[float, float]:
    """(CPUs, GPUs) per job: as asked, else one GPU per job where the cluster has GPUs (with its
    CPUs shared out per GPU), and one CPU per job where it has none."""
    res = ray.cluster_resources()
    n_gpu, n_cpu = float(res.get("GPU", 0)), float(res.get("CPU", 1))
    gpus = opts.gpus_per_job if opts.gpus_per_job is not None else (1.0 if n_gpu > 0 else 0.0)
    if gpus > 0 and n_gpu == 0:
        raise InputError(f"--gpus-per-job {gpus:g}: the Ray cluster has no GPU")
    if gpus > max(n_gpu, 1) and n_gpu:
        raise InputError(f"--gpus-per-job {gpus:g}: more than the cluster's {n_gpu:g} GPU(s)")
    cpus = opts.cpus_per_job
    if cpus is None:
        cpus = max(1.0, float(int(n_cpu / n_gpu * gpus))) if gpus > 0 else 1.0
    if cpus > n_cpu:
        raise InputError(f"--cpus-per-job {cpus:g}: more than the cluster's {n_cpu:g} CPU(s)")
    return cpus, gpus


def run_jobs(cfg: Config, todo: list[tuple[str, int]], base: Path, jobs: JobOptions,
             opts: RayOptions) -> list[JobResult]:
    """Every job of `todo` as a Ray task; a progress bar over jobs and one line per finished job.
    Returns all results (failed ones included) in the order they finished."""
    from tqdm import tqdm
    say, progress = jobs.say, jobs.progress
    ray = init_ray(opts.address)
    cpus, gpus = job_resources(ray, opts)
    say(f"Ray: {len(todo)} jobs, {cpus:g} CPU(s) and {gpus:g} GPU(s) each, on {ray.cluster_resources()}")
    task = ray.remote(worker_job).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
    task_jobs = dataclasses.replace(jobs, threads=max(1, int(cpus)), say=print)  # the driver's `say` stays here

    def submit(job):
        return task.remote(cfg, job[0], job[1], str(base), task_jobs)
    later = {a: [j for j in todo if j == (a, REFIT)] for a in {a for a, _ in todo}}  # a refit waits for its folds
    refs = {submit(j): j for j in todo if j[1] != REFIT}
    results, pending = [], list(refs)
    with tqdm(total=len(todo), desc="grid", unit="job", disable=not progress) as bar:
        while pending or any(later.values()):
            for arch in [a for a, jobs in later.items() if jobs and folds_settled(a, refs, results)]:
                job = later[arch].pop()
                if all(r.ok for r in results if r.arch == arch):
                    refs[ref := submit(job)] = job
                    pending.append(ref)
                else:
                    results.append(JobResult(arch, REFIT, cfg.exp_name(arch), False, "-", 0.0,
                                             error="not started: a fold of this experiment failed"))
            if not pending:
                continue
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                results.append(_result(ray, ref, refs[ref], cfg, base))
                (bar.write if progress else say)(f"[{len(results)}/{len(todo)}] {results[-1].line()}")
                bar.update(1)
    return results


def folds_settled(arch: str, refs: dict, results: list[JobResult]) -> bool:
    """Every fold job of `arch` submitted has finished (its refit may start: the folds' median
    best epoch is its epoch count)."""
    done = {(r.arch, r.fold) for r in results}
    return all(j in done for j in refs.values() if j[0] == arch and j[1] != REFIT)


def _result(ray, ref, job, cfg: Config, base: Path) -> JobResult:
    """The task's JobResult, or one made here when the task itself died (its worker crashed,
    ran out of memory, or its result could not come back)."""
    try:
        return ray.get(ref)
    except Exception as e:  # noqa: BLE001 - Ray raises several types for a dead task
        arch, fold = job
        exp = cfg.exp_name(arch)
        first = (str(e).strip().splitlines() or [type(e).__name__])[-1][:300]
        return JobResult(arch, fold, exp, False, "?", 0.0, error=f"{type(e).__name__}: {first}",
                         log=log_tail(Layout(base).fold(exp, fold).job_log))
