"""Imported first by every benchmark: puts src/ on the path. And what every benchmark does
with its figures: print one line, then save them with the machine,
the date and the command that made them to bench/results/<name>.json (atomically)."""
from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "src") not in sys.path:  # the benchmarks import the pipeline's modules by plain name
    sys.path.insert(0, str(ROOT / "src"))


def _script_name() -> str:
    script = Path(sys.argv[0]).resolve()
    return str(script.relative_to(ROOT)) if script.is_relative_to(ROOT) else str(script)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _isa_caps() -> dict:
    """The kernel caps in force (defectkit.testing.OTHER_CPU's variables), empty on the CPU's own kernels."""
    return {k: os.environ[k] for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_CBWR") if k in os.environ}


def _commit() -> str:
    """The commit the figures were made at (+ '-dirty' with uncommitted changes), or '' outside git."""
    import subprocess
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return ""


def save_result(result: dict, summary: str, out: str | Path | None, default_name: str) -> Path:
    out = Path(out) if out else ROOT / "bench" / "results" / f"{default_name}.json"
    result = {**result, "cpu": f"{os.cpu_count()} cores", "platform": platform.platform(),
              "cpu_model": _cpu_model(), "isa_caps": _isa_caps(), "commit": _commit(),
              "date": datetime.date.today().isoformat(),
              "command": " ".join(["python", _script_name(), *sys.argv[1:]])}
    from defectkit.core.fileio import write_json_atomic
    print(summary)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, result)
    print(f"wrote {out}")
    return out
