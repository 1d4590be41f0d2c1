"""`preset: auto` plans the run from the images, this machine and a time budget.

    survey   the training images' count and median size, the test images' count (a sample of up to 48
             images decoded: their sizes and the seconds one decode and resize takes)
    probe    seconds per image of each candidate backbone at two input sizes, on the device the run
             uses: the frozen stages' forward, the trainable rest's training step and forward (the CPU
             scheme), or the whole network's (the GPU scheme); a line a + b x pixels through the two
    plan     the largest input (up to the images' own size) at which one backbone fits the budget with
             5 epochs, then, while the estimate stays inside the budget, a second backbone, more
             epochs, a third backbone, TTA x8 for a square input; fields set in the YAML or on the
             command line are kept and the rest is planned around them

The plan is saved (plans/<competition>.json) with its inputs: the same command again finds it and
trains the same recipe (complete folds are skipped); another budget, device or image set is a new
plan, and its experiments get new names (the input size and epochs are in the name).

The parts: `inputs` (the survey), `probes` (timing backbones), `cost` (the cost model and the search:
pure, tested with made-up costs), `plans` (make, keep and apply a plan); their names are re-exported here.
"""
from defectkit.core.presets import LITES  # noqa: F401 - the backbones a plan chooses among
from defectkit.train.planner.cost import (  # noqa: F401
    ANOMALY_MAX_SIDE,
    ANOMALY_STRIDE,
    ANOMALY_UPGRADES,
    CORESET_S,
    DEFAULT_BUDGET,
    EPOCH_S,
    EPOCHS,
    FILL,
    FOLD_S,
    FOLDS,
    GPU_EPOCH_S,
    GPU_FOLD_S,
    IMAGE_MS,
    LINE_FILL,
    LINE_MS,
    LITE0_FORWARD_MS,
    LITE_CALL_RATIO,
    MAX_CACHE_GB,
    MAX_DRAWS,
    MIN_SIDE,
    MIN_STEPS,
    MIN_UPGRADE_BANK,
    NN_S,
    PLAN_FORMAT,
    PLANNED,
    START_S,
    ArchCost,
    Curve,
    JobFootprint,
    Plan,
    Survey,
    anomaly_hw,
    anomaly_image_ms,
    anomaly_s,
    anomaly_sizes,
    batch_for,
    cache_gb,
    draw_anomaly,
    estimate,
    fits,
    grow,
    grow_anomaly,
    ladder,
    lite0_forward_s,
    may_fit_line,
    member_estimate,
    min_epochs,
    notes,
    pack_jobs,
    search,
    search_anomaly,
    upgrade_anomaly,
    upgrade_banks,
)
from defectkit.train.planner.inputs import (  # noqa: F401
    survey,
)
from defectkit.train.planner.plans import (  # noqa: F401
    add_member,
    apply,
    device_kind,
    fixed_fields,
    load_saved,
    make_plan,
    plan_anomaly,
    plan_inputs,
    plan_path,
    resolve_auto,
)
from defectkit.train.planner.probes import (  # noqa: F401
    MEMBER_PROBE,
    PROBE_SIZES,
    Probe,
    loader_seconds,
    probe_arch,
)
