"""How far the learning tests' figures move with the data's seed and the CPU's instruction set, and so
how much margin each test's floor keeps: every test module that asserts a learnt figure
(defectkit.testing.learnt) is run with DEFECTKIT_TEST_SEED = 0, 1, 2 ... on this CPU's own kernels and under
defectkit.testing.OTHER_CPU, each figure recorded; writes per figure its floor, the worst and best value
seen, and the margin (worst - floor, or floor - worst for a figure that must stay below) to
bench/results/test_margins.json. A floor is sound when its margin is well above zero everywhere.

    python bench/test_margins.py                     # seeds 0 1 2, both profiles (about 30 min on 2 cores)
    python bench/test_margins.py --seeds 0 1 --profiles native
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import ROOT, save_result  # first: puts src/ on the path

from defectkit.testing import OTHER_CPU

PROFILES = {"native": {}, "other-cpu": OTHER_CPU}


def learning_modules() -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                  if re.search(r"^\s*learnt\(", p.read_text(), re.M))


def run(seed: int, profile: str, figures: Path, modules: list[str]) -> tuple[int, str]:
    env = {**os.environ, **PROFILES[profile], "DEFECTKIT_TEST_SEED": str(seed), "DEFECTKIT_FIGURES": str(figures)}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", *modules], cwd=ROOT,
                       env=env, capture_output=True, text=True)
    lines = r.stdout.strip().splitlines() or [""]
    print(f"seed {seed} {profile}: {lines[-1]}", flush=True)
    for line in lines:  # which tests failed (a failure before a test's figure leaves that figure out of the run)
        if line.startswith("FAILED "):
            print(f"  {line}", flush=True)
    return r.returncode, lines[-1]


def current_floors() -> list[tuple[re.Pattern, float]]:
    """(a pattern of the figure's name, its floor) of every learnt(...) call in the tests as they are now: the
    margins are taken against today's floors, whatever floor a recorded run asserted."""
    out = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "learnt" and len(node.args) >= 3):
                continue
            name, floor = node.args[0], node.args[2]
            if isinstance(name, ast.Constant):
                pattern = re.escape(name.value)
            elif isinstance(name, ast.JoinedStr):
                pattern = "".join(re.escape(v.value) if isinstance(v, ast.Constant) else ".+" for v in name.values)
            else:
                continue
            if isinstance(floor, ast.Constant):
                out.append((re.compile(pattern + "$"), float(floor.value)))
    return out


def summarise(rows: list[dict]) -> dict:
    out, floors = {}, current_floors()
    for r in rows:
        floor = next((fl for pat, fl in floors if pat.match(r["name"])), r["floor"])
        f = out.setdefault(r["name"], {"floor": floor, "below": r["below"], "values": {}})
        f["values"].setdefault(r["profile"], []).append(round(r["value"], 5))
    for f in out.values():
        seen = [v for vs in f["values"].values() for v in vs]
        worst = max(seen) if f["below"] else min(seen)
        f.update(worst=worst, best=min(seen) if f["below"] else max(seen), n=len(seen),
                 margin=round((f["floor"] - worst) if f["below"] else (worst - f["floor"]), 5))
    return dict(sorted(out.items(), key=lambda kv: kv[1]["margin"]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--profiles", nargs="+", choices=list(PROFILES), default=list(PROFILES))
    p.add_argument("--out")
    p.add_argument("--from-figures", help="summarise a figures file (DEFECTKIT_FIGURES) of runs made before instead")
    p.add_argument("--measured-at", help="with --from-figures: the commit the runs were made at")
    args = p.parse_args(argv)
    modules = learning_modules()
    if args.from_figures:
        rows = [json.loads(line) for line in Path(args.from_figures).read_text().splitlines()]
        done = sorted({(r["seed"], r["profile"]) for r in rows})
        args.seeds, args.profiles = sorted({s for s, _ in done}), sorted({pr for _, pr in done})
        runs = [{"seed": s, "profile": pr, "pytest": "(from the figures file)"} for s, pr in done]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            figures = Path(tmp) / "figures.jsonl"
            figures.touch()
            runs = [{"seed": s, "profile": pr, "pytest": run(s, pr, figures, modules)[1]}
                    for s in args.seeds for pr in args.profiles]
            rows = [json.loads(line) for line in figures.read_text().splitlines()]
    figs = summarise(rows)
    tight = min(figs.values(), key=lambda f: f["margin"]) if figs else None
    result = {"modules": modules, "seeds": args.seeds, "measured_at": args.measured_at or "this commit",
              "profiles": {k: PROFILES[k] for k in args.profiles},
              "runs": runs, "figures": figs}
    save_result(result, f"{len(figs)} figures over {len(runs)} runs; smallest margin "
                f"{tight['margin'] if tight else None}", args.out, "test_margins")
    return 0


if __name__ == "__main__":
    sys.exit(main())
