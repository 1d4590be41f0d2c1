#!/usr/bin/env bash
# The GPU kit: prove and measure the CUDA path on any CUDA machine with a stock PyTorch image
# (Python 3.12, torch, timm, opencv, pandas, scikit-learn), offline. Figures go to
# bench/results/*cuda*.json; README "GPU kit" says how to bring the bundles over.
#
#   bash bench/gpu/run.sh throughput   # train.py's loop vs a bare AMP loop: lite0 300 px, resnet50 224 px
#   bash bench/gpu/run.sh grid         # configs/elpv.yaml (3 lites x 5 folds) via --executor ray
#   bash bench/gpu/run.sh packing      # lite0 x 5 folds at 1 and at 0.5 GPU per job: jobs per hour
#   bash bench/gpu/run.sh all
#
# A step longer than one sitting can be run again: complete folds are skipped, an interrupted
# one resumes. Needs the bundles it names (python bench/gpu/kit.py status).
set -euo pipefail
cd "$(dirname "$0")/../.."
KIT=${KIT:-gpu_kit}
WORK=${WORK:-gpu_work}
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/$KIT/site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

need() { "$PY" bench/gpu/kit.py unpack --kit "$KIT" --need "$@"; }

"$PY" -c "import torch, sys; ok = torch.cuda.is_available(); print('torch', torch.__version__, 'CUDA', ok,
torch.cuda.get_device_name(0) if ok else ''); sys.exit(0 if ok else 3)"

throughput() {
    need aug
    "$PY" bench/train_throughput.py --device cuda --arch tf_efficientnet_lite0 --img-size 300 --batch-size 64 \
        --aug strong --pretrained none --steps 40 --repeats 3 --out bench/results/train_throughput_cuda_lite0_300.json
    "$PY" bench/train_throughput.py --device cuda --arch resnet50 --img-size 224 --batch-size 64 \
        --aug strong --pretrained none --steps 40 --repeats 3 --out bench/results/train_throughput_cuda_resnet50_224.json
}

data() {
    need aug ray weights data
    "$PY" src/prepare.py elpv --from "$KIT/unpacked/data" --workdir "$WORK"
}

grid() {
    data
    "$PY" bench/grid_bench.py --config configs/elpv.yaml --workdir "$WORK" --executor ray \
        --out bench/results/elpv_grid_cuda.json
}

packing() {
    data
    for g in 1 0.5; do
        "$PY" bench/grid_bench.py --config configs/elpv.yaml --workdir "$WORK" --executor ray --gpus-per-job "$g" \
            --archs tf_efficientnet_lite0 --name "{arch}_{img_size}_pack$g" --out "bench/results/ray_packing_cuda_gpus$g.json" \
            2>&1 | tail -n 3
    done
}

case "${1:-all}" in
    throughput) throughput ;;
    grid) grid ;;
    packing) packing ;;
    all) throughput; grid; packing ;;
    *) echo "usage: bash bench/gpu/run.sh [throughput|grid|packing|all]" >&2; exit 2 ;;
esac
