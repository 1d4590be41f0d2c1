"""One registry type for every place users extend the package (blend methods, data sources,
exporters): a name -> class mapping filled by a class decorator, whose lookup of an unknown name
is a one-line error listing the registered ones."""
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
