#!/usr/bin/env bash
# The GPU kit in one call: check and install the carried kit (gpu_kit/), then the environment, the
# training-loop benchmark, one ELPV fold and as much of the grid as the budget allows, each step's
# JSON written under $OUT (and bench/results/) before the next starts. README "GPU kit" says how
# to pack the kit here and which `device` call carries it.
#
#   bash bench/gpu/run.sh                              # on the GPU machine (defaults: --device cuda --minutes 8.5)
#   bash bench/gpu/run.sh --device cpu --minutes 20 --parallel 1 --recipe "--epochs 1 --img-size 64" ...
#                                                      # the CPU check (make gpu-kit-check)
# Flags: bench/gpu/steps.py --help.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" bench/gpu/steps.py "$@"
