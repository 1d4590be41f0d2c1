import os
import sys
from pathlib import Path

# Offline for the whole session, before anything imports huggingface_hub (it reads the variable once,
# at import): a weight source that is not here fails at once instead of retrying the hub.
os.environ["HF_HUB_OFFLINE"] = "1"

# Under pytest-xdist (make test: -n 2), each worker keeps to its own share of the cores, set before torch is
# imported: its threads (sized by defectkit.runtime.cpus.usable_cpus) then never outnumber them, where two
# workers each sized to the whole machine would run twice the threads the cores have and wait on each other.
_worker, _workers = os.environ.get("PYTEST_XDIST_WORKER", ""), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _worker.startswith("gw") and _workers > 1 and hasattr(os, "sched_setaffinity"):
    _cpus = sorted(os.sched_getaffinity(0))
    if len(_cpus) >= _workers:
        os.sched_setaffinity(0, _cpus[int(_worker[2:]) % _workers::_workers])

import pytest  # noqa: E402

from defectkit.ensemble.report import run_blend  # noqa: E402
from defectkit.pipeline.grid import run_grid  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


@pytest.fixture(scope="session")
def toy_base(tmp_path_factory):
    """A workdir with input/toy/ (train/test images, tables, solution), configs/toy.yaml and
    folds/toy.csv, shared read-only by the tests of a session."""
    from defectkit.testing import make_toy_workdir
    return make_toy_workdir(tmp_path_factory.mktemp("toy"))


@pytest.fixture
def work(toy_base, tmp_path):
    """A writable copy of the toy workdir for one test (modules that need another workdir
    define their own `work`)."""
    from defectkit.testing import copy_toy_workdir
    return copy_toy_workdir(toy_base, tmp_path)


@pytest.fixture(scope="session")
def blended(tmp_path_factory):
    """A toy competition with two experiments of different input shapes, one trained on the
    frozen-feature cache, blended in rank space."""
    from defectkit.core.config import load_config
    from defectkit.testing import make_toy_competition, write_toy_config
    base = tmp_path_factory.mktemp("blended")
    make_toy_competition(base)
    quiet = {"progress": False, "say": lambda *a: None}
    run_grid(load_config(write_toy_config(base, archs=["resnet10t"], epochs=3, tta=4)), base, **quiet)
    cfg = load_config(write_toy_config(base, archs=["test_efficientnet"], epochs=3, tta=4, img_size=40,
                                       cache_frozen=True, freeze_stages=2), {"name": "{arch}_cached"})
    run_grid(cfg, base, **quiet)
    run_blend(cfg.competition, base, "rank", verbose=False)
    return base, cfg
