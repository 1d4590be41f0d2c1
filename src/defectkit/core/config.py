"""One configuration for a run: a competition description plus a training recipe.

`configs/<name>.yaml` has two sections, `competition:` and `recipe:`; a variant names its
`base:` and overrides only what differs. The recipe starts from a named preset
(`presets.py`; `preset: auto` follows the hardware), then the YAML's fields, then
command-line flags, which are generated from the dataclass fields below. Every value is
converted and checked by its type and range when the config is built: a bad one is a
one-line error naming the file (or flag) and the key. The resolved config is saved beside
every run with `save_config`.

The schema itself (Competition, Recipe, Config, the hash rule) is core/schema.py, re-exported here;
the command-line flags are cli/flags.py.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from defectkit.core.checks import InputError, check_name
from defectkit.core.fileio import write_text_atomic
from defectkit.core.presets import PRESETS, resolve_preset
from defectkit.core.schema import (  # re-exported: the names a plugin or a notebook imports from here
    CONFIG_DIR,
    GRID_FIELDS,
    ROOT,
    Competition,
    Config,
    Recipe,
    config_hash,
    hashed_fields,
    schema,
)

__all__ = ["CONFIG_DIR", "GRID_FIELDS", "ROOT", "Competition", "Config", "Recipe", "config_hash", "hashed_fields",
           "load_config", "resolve_config_path", "save_config", "schema"]


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_yaml(path: Path, seen: tuple = ()) -> dict:
    if not path.exists():
        raise InputError(f"{path}: config file not found (configs available: "
                         f"{', '.join(sorted(p.name for p in CONFIG_DIR.glob('*.yaml')))})")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; expected a config YAML file")
    if path.resolve() in seen:
        raise InputError(f"{path}: `base:` chain loops back to itself")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file (a binary file?); expected a config YAML") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        tab = " (YAML does not allow tabs for indentation)" if "\t" in path.read_text() else ""
        raise InputError(f"{path}: {where}not valid YAML: {problem}{tab}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping with `competition:` and `recipe:`")
    base = data.pop("base", None)
    if base is not None and not isinstance(base, str):
        raise InputError(f"{path}: base: {base!r}; expected the file name of one config to start from")
    if base:
        data = _merge(_read_yaml(path.parent / base, seen + (path.resolve(),)), data)
    return data


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _to_float(v, where: str) -> float:
    x = None
    if _is_int(v) or isinstance(v, float):
        x = float(v)
    elif isinstance(v, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            x = float(v)
        except ValueError:
            pass
    if x is None:
        raise InputError(f"{where}: expected a number, got {v!r}")
    if not math.isfinite(x):  # NaN passes every range check: refused here, for every float field
        raise InputError(f"{where}: {v!r}; expected a finite number")
    return x


def _to_int(v, where: str) -> int:
    if _is_int(v):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    hint = " (remove the quotes)" if isinstance(v, str) and v.strip().lstrip("-").isdigit() else ""
    raise InputError(f"{where}: expected a whole number, got {v!r}{hint}")


def _to_list(v, where: str, item) -> list:
    if not isinstance(v, (list, tuple)):
        raise InputError(f"{where}: expected a list (e.g. [a, b]), got {v!r}")
    return [item(x, f"{where}[{i}]") for i, x in enumerate(v)]


def _to_str(v, where: str) -> str:
    if isinstance(v, str):
        return v
    raise InputError(f"{where}: expected text, got {v!r}")


def _to_bool(v, where: str) -> bool:
    if isinstance(v, bool):
        return v
    raise InputError(f"{where}: expected true or false, got {v!r}")


def _convert(name: str, typ, v, where: str):
    if name == "img_size":
        if isinstance(v, (list, tuple)):
            if len(v) not in (1, 2):
                raise InputError(f"{where}: expected one number or [height, width], got {v!r}")
            v = _to_list(v, where, _to_int)
            return v[0] if len(v) == 1 or v[0] == v[1] else v
        return _to_int(v, where)
    if typ is bool:
        return _to_bool(v, where)
    if typ is int:
        return _to_int(v, where)
    if typ is float:
        return _to_float(v, where)
    if typ is str:
        return "" if v is None and name in ("group_col", "weights", "kaggle_slug", "data_dir") else _to_str(v, where)
    if typ is dict:
        if not isinstance(v, dict):
            raise InputError(f"{where}: expected a mapping, got {v!r}")
        return v
    if typ == list[int]:
        return _to_list(v, where, _to_int)
    if typ == list[str]:
        return _to_list(v, where, _to_str)
    raise TypeError(f"no converter for {name}: {typ}")

_BOUNDS = {"ge": (">=", lambda x, b: x >= b), "gt": (">", lambda x, b: x > b),
           "le": ("<=", lambda x, b: x <= b), "lt": ("<", lambda x, b: x < b)}


def _check_range(cls, name: str, v, where: str) -> None:
    """`v` against the field's choices and bounds (its schema, `opt`)."""
    meta = schema(cls, name)
    if meta["choices"] is not None and v not in meta["choices"]:
        raise InputError(f"{where}: {v!r} is not one of {', '.join(map(str, meta['choices']))}")
    bounds = [(k, meta[k]) for k in _BOUNDS if meta[k] is not None]
    for x in (v if isinstance(v, list) else [v]):
        if bounds and not all(_BOUNDS[k][1](x, b) for k, b in bounds):
            rng = " and ".join(f"{_BOUNDS[k][0]} {b}" for k, b in bounds)
            raise InputError(f"{where}: {x!r} is out of range; expected a value {rng}")


def _build(cls, values: dict, where_of) -> Any:
    """`cls(**values)` with every value converted and checked; `where_of(key)` names its origin."""
    hints = get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    out = {}
    for key, v in values.items():
        if key not in known:
            near = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {near[0]}?" if near else f"; expected one of {', '.join(known)}"
            raise InputError(f"{where_of(key)}: unknown key{hint}")
        out[key] = _convert(key, hints[key], v, where_of(key))
        _check_range(cls, key, out[key], where_of(key))
    return cls(**out)


def _check_competition(comp: Competition, where: str) -> None:
    check_name(comp.name, f"{where}.name")
    cols = comp.submission_columns
    if len(cols) != 2 or cols[0] == cols[1]:
        raise InputError(f"{where}.submission_columns: {cols!r}; expected two different names "
                         "[id column, prediction column]")
    if not comp.image_ext.startswith("."):
        raise InputError(f"{where}.image_ext: {comp.image_ext!r}; expected an extension such as .png")
    ts = (comp.source or {}).get("test_size")
    if ts is not None:
        _check_test_size(_to_float(ts, f"{where}.source.test_size"), f"{where}.source.test_size")


def _check_test_size(v: float, where: str) -> None:
    if not 0 < v < 1:
        raise InputError(f"{where}: {v!r}; expected a fraction between 0 and 1 (e.g. 0.25)")


def resolve_config_path(competition: str | None = None, config: str | None = None,
                        workdir: str | Path | None = None) -> Path:
    if config:
        return Path(config)
    if competition:
        check_name(competition, "--competition")
        local = Path(workdir or ROOT) / "configs" / f"{competition}.yaml"
        return local if local.exists() else CONFIG_DIR / f"{competition}.yaml"
    raise InputError("give --competition NAME (reads configs/NAME.yaml) or --config PATH")


def load_config(path: str | Path, overrides: dict | None = None) -> Config:
    """Load a YAML config (following `base:`), apply its preset, then `overrides` (flags)."""
    path = Path(path)
    data = _read_yaml(path)
    unknown = set(data) - {"competition", "recipe"}
    if unknown:
        raise InputError(f"{path}: unknown section(s) {sorted(unknown)}; expected competition:, recipe:")
    for section in ("competition", "recipe"):
        if data.get(section) is not None and not isinstance(data[section], dict):
            raise InputError(f"{path}: {section}: expected a mapping of keys, got {data[section]!r}")
    comp = dict(data.get("competition") or {})
    recipe = dict(data.get("recipe") or {})
    flags = {}
    for k, v in (overrides or {}).items():
        (flags if k in Recipe.__dataclass_fields__ else comp).__setitem__(k, v)
    comp.setdefault("name", path.stem)

    def where(key: str) -> str:
        if key in flags:
            return "--" + key.replace("_", "-")
        return f"{path}: recipe.{key}"

    asked = flags.get("preset", recipe.get("preset")) or ""
    fixed = {}
    if asked:
        device = flags.get("device", recipe.get("device", "auto"))
        name = resolve_preset(_to_str(asked, where("preset")), _to_str(device, where("device")))
        if name not in PRESETS:
            near = difflib.get_close_matches(name, PRESETS, n=1)
            raise InputError(f"{where('preset')}: no preset {name!r}"
                             + (f"; did you mean {near[0]}?" if near else "")
                             + f" (presets: auto, {', '.join(PRESETS)})")
        fixed = {**PRESETS[name], "preset": name}
    merged = {**fixed, **{k: v for k, v in recipe.items() if k != "preset"},
              **{k: v for k, v in flags.items() if k != "preset"}}
    if "preset" in fixed:
        merged["preset"] = fixed["preset"]
    rec = _build(Recipe, merged, where)
    if not rec.archs:
        raise InputError(f"{where('archs')}: empty; name at least one timm model")
    competition = _build(Competition, comp, lambda k: f"{path}: competition.{k}")
    _check_competition(competition, f"{path}: competition")
    explicit = frozenset(k for k in {*recipe, *flags} if k != "preset")
    cfg = Config(competition, rec, str(path), asked == "auto", explicit)
    for arch in rec.archs:
        cfg.exp_name(arch)
    return cfg


def save_config(cfg: Config, path: Path) -> None:
    write_text_atomic(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
