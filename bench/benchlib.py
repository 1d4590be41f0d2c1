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


def save_result(result: dict, summary: str, out: str | Path | None, default_name: str) -> Path:
    out = Path(out) if out else ROOT / "bench" / "results" / f"{default_name}.json"
    result = {**result, "cpu": f"{os.cpu_count()} cores", "platform": platform.platform(),
              "date": datetime.date.today().isoformat(),
              "command": " ".join(["python", _script_name(), *sys.argv[1:]])}
    from defectkit.core.fileio import write_json_atomic
    print(summary)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, result)
    print(f"wrote {out}")
    return out
