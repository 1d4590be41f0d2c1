"""The whole competition: prepare -> folds -> every arch x fold (and refits) through an executor ->
blend -> submission, skipping complete folds and resuming an interrupted one."""
from __future__ import annotations

import dataclasses
import shlex
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

from defectkit.core.checks import InputError, check_classifier_defects
from defectkit.core.config import Config, config_hash
from defectkit.core.fileio import file_hash, write_json_atomic
from defectkit.core.layout import REFIT, Layout
from defectkit.core.members import get_member
from defectkit.core.records import BlendReport, FoldRecord, fold_differences
from defectkit.data.folds import fold_summary, make_folds
from defectkit.data.sources import SOURCES, prepare_from_config
from defectkit.ensemble.report import BlendOptions, run_blend
from defectkit.train.fold import JobOptions, refit_config, train_job
from defectkit.train.planner import anomaly_hw, resolve_auto
from defectkit.train.ray_executor import RayOptions, run_jobs

EXECUTORS = ("local", "ray")


class GridError(InputError):
    """Some jobs of the grid failed (each was named with its log); the rest are complete."""


def ensure_data(cfg: Config, base: Path, say=print) -> None:
    """Prepare the competition when its source is known (a no-op when already prepared)."""
    comp = cfg.competition
    if (comp.source or {}).get("type") in SOURCES:
        say(prepare_from_config(comp, base=base))
    elif not Layout(base).train_csv(comp).exists():
        raise InputError(f"{Layout(base).train_csv(comp)} not found and competition {comp.name!r} names no "
                         f"source ({', '.join(SOURCES)}) to prepare it from; see python src/prepare.py --help")


def ensure_folds(cfg: Config, base: Path, say=print) -> Path:
    path = Layout(base).folds_file(cfg.competition)
    if not path.exists():
        folds = make_folds(cfg.competition, cfg.recipe.n_folds, cfg.recipe.seed, base=base)
        say(f"wrote {path}:\n{fold_summary(folds).to_string()}")
    else:
        n = pd.read_csv(path, usecols=["fold"])["fold"].max() + 1
        if n != cfg.recipe.n_folds:
            raise InputError(f"{path} has {n} folds but the recipe asks for {cfg.recipe.n_folds}; re-run "
                             "python src/make_folds.py (this invalidates existing OOF files) or set n_folds")
    return path


def job_state(cfg: Config, arch: str, fold: int, base: Path, folds_hash: str) -> str:
    """'done' (complete, same recipe and folds), 'stale' (complete, made otherwise) or 'todo'."""
    meta_path = Layout(base).fold(cfg.exp_name(arch), fold).meta
    if not meta_path.exists():
        return "todo"
    meta = FoldRecord.read(meta_path)
    if fold == REFIT:  # derived from the folds: out of date means to do again, never a conflict
        try:
            want = config_hash(refit_config(cfg, arch, base))
        except InputError:
            return "todo"
        return "todo" if fold_differences(meta, competition=meta.competition, folds_hash=folds_hash,
                                          config_hash=want) else "done"
    differs = fold_differences(meta, competition=meta.competition, folds_hash=folds_hash,
                               config_hash=config_hash(cfg), arch=arch)
    return "stale" if differs else "done"


def estimate_eta(done: list[tuple[bool, float]], remaining_firsts: list[bool]) -> float | None:
    """Seconds left, from the jobs done so far as (first of its arch?, seconds) and, per job
    still to run, whether it is the first of its arch (it builds caches: extra time).

    A job costs the median of the other jobs done (robust to one slow fold); a first job costs
    that plus the median extra time the firsts done so far took. None before any job is done."""
    if not done:
        return None
    rest = [s for first, s in done if not first]
    firsts = [s for first, s in done if first]
    per_job = statistics.median(rest or firsts)
    extra = max(statistics.median(firsts) - per_job, 0.0) if firsts and rest else 0.0
    return per_job * len(remaining_firsts) + extra * sum(remaining_firsts)


def plan_jobs(cfg: Config, base: Path, fhash: str, force: bool) -> tuple[list, dict]:
    """Every (arch, fold) of the grid and its state; a complete fold made by another recipe
    is an error unless --force."""
    folds = cfg.recipe.folds or list(range(cfg.recipe.n_folds))
    bad = [k for k in folds if not 0 <= k < cfg.recipe.n_folds]
    if bad:
        raise InputError(f"--folds {bad}: the folds file has folds 0..{cfg.recipe.n_folds - 1}")
    jobs = [(arch, k) for arch in cfg.recipe.archs for k in folds]
    if cfg.recipe.refit != "none" and not cfg.recipe.folds:  # each arch's refit after its folds (their epochs)
        jobs = [j for a in cfg.recipe.archs for j in [(b, k) for b, k in jobs if b == a] + [(a, REFIT)]]
    states = {job: job_state(cfg, *job, base, fhash) for job in jobs}
    stale = [j for j, s in states.items() if s == "stale"]
    if stale and not force:
        a, k = stale[0]
        raise InputError(f"{Layout(base).fold(cfg.exp_name(a), k).meta} was made by another recipe or folds file; "
                         "give this recipe another `name`, or pass --force to retrain "
                         f"({len(stale)} such fold(s))")
    return jobs, states


def train_local(cfg: Config, todo: list, base: Path, jobs: JobOptions) -> None:
    """The local executor: every job in turn, in this process, with an ETA."""
    # the first job of each arch in this run also builds its caches: timed apart for the ETA
    firsts = [i == 0 or todo[i - 1][0] != a for i, (a, _) in enumerate(todo)]
    done: list[tuple[bool, float]] = []
    for i, (arch, k) in enumerate(todo):
        eta = estimate_eta(done, firsts[i:])
        eta = f", ETA {eta / 60:.1f} min" if eta is not None else ""
        jobs.say(f"[job {i + 1}/{len(todo)}] {cfg.exp_name(arch)} fold {k}{eta}")
        t0 = time.time()
        train_job(cfg, arch, k, base, jobs)
        done.append((firsts[i], time.time() - t0))


def train_ray(cfg: Config, todo: list, base: Path, jobs: JobOptions, opts: RayOptions) -> None:
    """The Ray executor: every job a task; failures are named with their log's tail, then an error."""
    say = jobs.say
    results = run_jobs(cfg, todo, base, jobs, opts)
    failed = [r for r in results if not r.ok]
    for r in failed:
        log = Layout(base).fold(r.exp, r.fold).job_log
        say(f"\nFAILED {r.exp} fold {r.fold} on {r.node}: {r.error}\n--- last lines of {log} ---\n{r.log}")
    if failed:
        names = ", ".join(f"{r.exp} fold {r.fold}" for r in failed)
        raise GridError(f"{len(failed)} of {len(results)} jobs failed ({names}); the other folds are complete; "
                        "no blend was made. Fix the cause and run the same command again: only what is missing runs")


def anomaly_companion(cfg: Config) -> Config:
    """The anomaly member beside a classifier grid (recipe with_anomaly): the first backbone, its
    input cut to at most 512 px a side, TTA x1, named {arch}_anomaly{img_size}."""
    h, w = anomaly_hw(cfg.recipe.hw)
    rec = dataclasses.replace(cfg.recipe, member="anomaly", archs=cfg.recipe.archs[:1], tta=1, with_anomaly=False,
                              img_size=h if h == w else [h, w], aspect_ratio=1.0, name="{arch}_anomaly{img_size}",
                              refit=cfg.recipe.refit)
    return dataclasses.replace(cfg, recipe=rec)


def member_configs(cfg: Config, base: Path) -> list[Config]:
    """The grid's recipes: the config's own, and the anomaly member's when with_anomaly; a
    classifier grid needs a defect in every fold (one line otherwise)."""
    kind = get_member(cfg.recipe.member)
    if kind.needs_defects:
        layout = Layout(base)
        folds = pd.read_csv(layout.folds_file(cfg.competition), usecols=["target"])
        check_classifier_defects(int(folds["target"].sum()), cfg.recipe.n_folds, layout.train_csv(cfg.competition))
    extra = [anomaly_companion(cfg)] if cfg.recipe.with_anomaly and kind.needs_defects else []
    return [cfg, *extra]


def run_grid(cfg: Config, base: Path, force: bool = False, progress: bool = True, say=print,
             ray: RayOptions | None = None) -> dict | None:
    """The whole competition: every job in turn here, or each a Ray task when `ray` is given."""
    base = Path(base)
    t_start = time.time()
    ensure_data(cfg, base, say)
    fpath = ensure_folds(cfg, base, say)
    cfg = resolve_auto(cfg, base, say)
    grids = []  # (recipe, its jobs, those still to run)
    for c in member_configs(cfg, base):
        jobs, states = plan_jobs(c, base, file_hash(fpath), force)
        todo = [j for j in jobs if states[j] != "done"]
        grids.append((c, jobs, todo))
        n_folds = len(c.recipe.folds or range(c.recipe.n_folds))
        refits = " + a full-data refit each" if any(k == REFIT for _, k in jobs) else ""
        kind = "" if c is grids[0][0] else f" (the {c.recipe.member} member)"
        say(f"{len(jobs)} jobs{kind} ({len(c.recipe.archs)} archs x {n_folds} folds{refits}): "
            f"{len(jobs) - len(todo)} complete, {len(todo)} to run")
    partial = bool(cfg.recipe.folds) and sorted(set(cfg.recipe.folds)) != list(range(cfg.recipe.n_folds))
    if partial:
        say(f"folds {sorted(set(cfg.recipe.folds))} of {cfg.recipe.n_folds} asked for: they will be trained, but a "
            "blend needs every fold, so none is made; train the others, then python src/blend.py")
    jobs = JobOptions(file_hash(fpath), force, progress, say=say)
    for c, _, todo in grids:
        if ray is not None and todo:
            train_ray(c, todo, base, jobs, ray)
        else:
            train_local(c, todo, base, jobs)
    if partial:
        return None
    return finish([c for c, _, _ in grids], base, t_start, say)


def finish(cfgs: list[Config], base: Path, t_start: float, say=print) -> dict:
    """The blend, the submission and the final table, once every job of the grids' recipes
    (`cfgs`: the config's own first) is complete."""
    cfg = cfgs[0]
    exps = list(dict.fromkeys(c.exp_name(a) for c in cfgs for a in c.recipe.archs))
    made = {}  # the summary and its table, made inside the blend's result set before it is committed

    def add_summary(rs, report):
        made["table"] = table = final_table(cfg, base, exps, report)
        made["summary"] = {"config": cfg.source_file, "table": table.to_dict("records"),
                           "wall_secs": round(time.time() - t_start, 1), "plan": cfg.plan,
                           "blend": {k: getattr(report, k) for k in ("method", "weights", "blend_oof_auc",
                                                                     "cross_check", "local_leaderboard",
                                                                     "operating_points")}}
        write_json_atomic(rs.path("run_summary.json"), made["summary"])

    opts = BlendOptions(cfg.recipe.blend_method, exps, strict=True, stack_meta=cfg.recipe.stack_meta,
                        refit=cfg.recipe.refit, command=shlex.join(["python", "src/run.py", *sys.argv[1:]]))
    report = run_blend(cfg.competition, base, opts, verbose=True, extra=add_summary)
    say("\n" + made["table"].to_string(index=False))
    planned = f" (the plan estimated {cfg.plan['total_s'] / 60:.1f})" if cfg.plan else ""
    say(f"wall time {(time.time() - t_start) / 60:.1f} min{planned}; submission: {report.submission}")
    return made["summary"]


def final_table(cfg: Config, base: Path, exps: list[str], report: BlendReport) -> pd.DataFrame:
    lb = report.local_leaderboard or {}
    by_exp = {r["experiment"]: r for r in report.table}
    rows = []
    for e in exps:
        metas = [FoldRecord.read(p) for p in Layout(base).fold_metas(e)]
        r = by_exp[e]
        rows.append({"experiment": e, "oof_auc": r["oof_auc"],
                     "fold_auc": f"{r['fold_auc_mean']:.4f} +- {r['fold_auc_std']:.4f}",
                     "test_auc": lb.get(e, float("nan")),
                     "train_min": round(sum(m.secs for m in metas) / 60, 1)})
    chosen = report.operating_points["chosen"]
    rows.append({"experiment": f"BLEND ({report.method})", "oof_auc": report.blend_oof_auc,
                 "fold_auc": "not cross-checked (a fold without defects)" if report.cross_check.get("note") else
                             f"{report.cross_check['blend_auc_mean']:.4f} +- "
                             f"{report.cross_check['blend_auc_std']:.4f} (cross-checked)",
                 "test_auc": lb.get("blend", float("nan")), "train_min": float("nan")})
    table = pd.DataFrame(rows)
    table["oof_acc"] = [float("nan")] * (len(rows) - 1) + [chosen["accuracy"]]
    test_acc = lb.get("at_oof_threshold", {}).get("accuracy", float("nan"))
    table["test_acc"] = [float("nan")] * (len(rows) - 1) + [test_acc]
    return table
