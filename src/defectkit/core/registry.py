"""The registries of every place users extend the package, and their one type: a name -> class
mapping filled by a class decorator, whose lookup of an unknown name is a one-line error listing the
registered ones. They are empty here: each kind registers itself in the module that defines it
(member kinds in train/, blend methods in ensemble/, data sources in data/, exporters in ship/), as
timm's models do; an outside kind through the entry-point group `defectkit.plugins` (core/plugins.py).
The core reads them (the config's choices) without importing any layer above it."""
from __future__ import annotations

from defectkit.core.checks import InputError


class Registry(dict):
    """`REG.register("name")` decorates a class (sets its `name`); `REG.lookup(name)` returns it."""

    def __init__(self, what: str):
        super().__init__()
        self.what = what  # how an error names the setting, e.g. "--blend-method"

    def register(self, name: str):
        def deco(cls):
            cls.name = name
            self[name] = cls
            return cls
        return deco

    def lookup(self, name: str):
        if name not in self:
            raise InputError(f"{self.what} {name!r}: expected one of {', '.join(self)}")
        return self[name]


MEMBERS = Registry("member")  # recipe field `member`: core/members.py's MemberKind, defined in train/
METHODS = Registry("--blend-method")  # ensemble/methods.py's BlendMethod
SOURCES = Registry("source type")  # data/sources.py's Source
EXPORTERS = Registry("--target")  # ship/exporters.py's Exporter
