"""The command-line flags every script shares: --competition / --config / --workdir, and one flag per
recipe field, generated from the schema (a field's type, choices and help)."""
from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any, get_type_hints

from defectkit.core.config import load_config, resolve_config_path
from defectkit.core.presets import PRESETS
from defectkit.core.schema import ROOT, Config, Recipe, schema


def add_recipe_flags(parser: argparse.ArgumentParser, only: tuple | None = None, exclude: tuple = ()) -> None:
    """Add one `--flag` per Recipe field (default None = keep the config's value); booleans are
    `--flag` / `--no-flag`."""
    hints = get_type_hints(Recipe)
    group = parser.add_argument_group("recipe overrides (default: the config's value)")
    for f in fields(Recipe):
        if (only is not None and f.name not in only) or f.name in exclude:
            continue
        flag = "--" + f.name.replace("_", "-")
        typ = hints[f.name]
        kw: dict[str, Any] = {"default": None, "dest": f.name}
        if typ is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif f.name == "img_size":
            kw.update(nargs="+", type=int, metavar=("SIZE", "WIDTH"))
        elif typ == list[int]:
            kw.update(nargs="+", type=int)
        elif typ == list[str]:
            kw.update(nargs="+", type=str)
        elif typ in (int, float):
            kw.update(type=typ)
        else:
            kw.update(type=str)
        if schema(Recipe, f.name)["choices"] is not None:
            kw["choices"] = schema(Recipe, f.name)["choices"]
        if f.name == "preset":
            kw["choices"] = ("auto", *PRESETS)
        if f.metadata["doc"]:
            kw["help"] = f.metadata["doc"]
        group.add_argument(flag, **kw)


def recipe_overrides(args: argparse.Namespace) -> dict:
    return {f.name: getattr(args, f.name) for f in fields(Recipe)
            if getattr(args, f.name, None) is not None}


def config_parser(description: str | None) -> argparse.ArgumentParser:
    """A script's parser with the config flags (--competition, --config, --workdir)."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(p)
    return p


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--competition", help="competition name: reads configs/NAME.yaml")
    parser.add_argument("--config", help="config YAML (instead of --competition)")
    add_workdir_flag(parser)


def add_workdir_flag(parser: argparse.ArgumentParser, default=str(ROOT)) -> None:
    parser.add_argument("--workdir", default=default,
                        help="folder holding input/, folds/, models/, oof/, submissions/ (default: the repository)")


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(resolve_config_path(args.competition, args.config, getattr(args, "workdir", None)),
                       recipe_overrides(args))
