"""The code's shape, kept: every module of the package and every script: no function over 50 lines
or with more than 8 parameters; imports go down the layers only, none of the package's own inside a
function; scripts only call the library; the bundle's runtime imports only
the standard library, numpy, OpenCV and a model runtime; importing the ensemble layer, the core or
the runtime never imports torch (an import inside a function runs only when it is called: resolving
`preset: auto` asks torch whether a GPU is visible)."""
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PKG = SRC / "defectkit"
MAX_LINES, MAX_PARAMS = 50, 6  # more parameters than 6: a value type is missing (issue 31)
RUNTIME_OK = {"numpy", "cv2", "onnxruntime", "openvino"}  # besides the standard library and the runtime itself
NO_TORCH = ("defectkit.ensemble", "defectkit.core", "defectkit.runtime")
TORCH = {"torch", "torchvision", "timm"}


def _functions(folder: Path):
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.relative_to(folder), node


def long_functions(folder: Path = SRC, limit: int = MAX_LINES) -> list[str]:
    return [f"{p}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)" for p, n in _functions(folder)
            if n.end_lineno - n.lineno + 1 > limit]


def many_parameters(folder: Path = SRC, limit: int = MAX_PARAMS) -> list[str]:
    out = []
    for p, n in _functions(folder):
        a = n.args
        names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
        names += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
        if len(names) > limit:
            out.append(f"{p}:{n.lineno} {n.name} ({len(names)} parameters)")
    return out


def module_name(path: Path, src: Path = SRC) -> str:
    rel = path.relative_to(src).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports_of(path: Path, src: Path = SRC, nested: bool = True) -> set[str]:
    """Absolute names of every module `path` imports: at its top level, and with `nested` inside
    functions and classes too."""
    here = module_name(path, src).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree) if nested else tree.body:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            mod = ".".join([*base, *([node.module] if node.module else [])])
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}  # `from pkg import module`
    return out


def import_graph(src: Path = SRC, package: str = "defectkit", nested: bool = False) -> dict[str, set[str]]:
    """What importing each module of the package imports (its top-level imports: import time)."""
    return {module_name(p, src): imports_of(p, src, nested) for p in sorted((src / package).rglob("*.py"))}


def reaches(graph: dict, start: str, targets: set[str]) -> list[str]:
    """A chain of imports from `start` to a module in `targets` (top-level names), or []."""
    seen, stack = {start}, [[start]]
    while stack:
        chain = stack.pop()
        for imp in sorted(graph.get(chain[-1], ())):
            if imp.split(".")[0] in targets:
                return [*chain, imp]
            if imp in graph and imp not in seen:
                seen.add(imp)
                stack.append([*chain, imp])
    return []


def runtime_violations(src: Path = SRC, package: str = "defectkit.runtime") -> list[str]:
    folder = src.joinpath(*package.split("."))
    out = []
    for path in sorted(folder.glob("*.py")):
        for imp in imports_of(path, src):
            top = imp.split(".")[0]
            if top in sys.stdlib_module_names or top in RUNTIME_OK or imp.startswith(package) \
                    or top == "defect_runtime":
                continue
            out.append(f"{path.name} imports {imp}")
    return sorted(set(out))


def torch_chains(src: Path = SRC, layers=NO_TORCH) -> list[str]:
    graph = import_graph(src)
    return [" -> ".join(c) for m in graph if m.startswith(layers) for c in [reaches(graph, m, TORCH)] if c]


def test_no_function_is_over_50_lines_or_has_over_6_parameters():
    assert long_functions() == [] and many_parameters() == []


def test_the_checks_find_a_long_function_and_a_long_signature(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "m.py").write_text(f"def f():\n{body}\n\n\ndef g(self, a, b, c, d, e, f, *, g=0):\n    pass\n")
    assert long_functions(tmp_path) == [f"m.py:1 f ({MAX_LINES + 1} lines)"]
    assert many_parameters(tmp_path) == [f"m.py:{MAX_LINES + 4} g (7 parameters)"]


def test_the_bundle_runtime_needs_only_the_standard_library_numpy_opencv_and_a_model_runtime():
    assert runtime_violations() == []
    assert {"runner.py", "spec.py", "combine.py", "imaging.py"} <= {p.name for p in (PKG / "runtime").glob("*.py")}


def test_the_ensemble_layer_the_core_and_the_runtime_never_reach_torch():
    assert torch_chains() == []


def test_the_import_checks_find_a_violation(tmp_path):
    pkg = tmp_path / "defectkit"
    (pkg / "runtime").mkdir(parents=True)
    (pkg / "ensemble").mkdir()
    for d in (pkg, pkg / "runtime", pkg / "ensemble"):
        (d / "__init__.py").write_text("")
    (pkg / "runtime/runner.py").write_text("import json\nimport pandas as pd\nfrom .imaging import x\n")
    (pkg / "ensemble/methods.py").write_text("from defectkit.ensemble import helpers\n")
    (pkg / "ensemble/helpers.py").write_text("import timm.models\n\n\ndef f():\n    import torch\n")
    assert runtime_violations(tmp_path) == ["runner.py imports pandas"]
    assert torch_chains(tmp_path) == [
        "defectkit.ensemble.helpers -> timm.models",
        "defectkit.ensemble.methods -> defectkit.ensemble.helpers -> timm.models"]


# The package's layers, bottom to top (DESIGN.md): an import only goes down, counting imports inside functions.
LAYERS = ("runtime", "core", "data", "train", "ensemble", "ship", "explain", "pipeline", "cli")


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[0] == "defectkit" and parts[1] in LAYERS else None


def upward_imports(src: Path = SRC) -> list[str]:
    """Every import, at the top or inside a function, of a module of a higher layer than the importer's."""
    out = []
    for path in sorted((src / "defectkit").rglob("*.py")):
        here = layer_of(module_name(path, src))
        if here is None:
            continue
        for imp in sorted(imports_of(path, src)):
            there = layer_of(imp)
            if there is not None and there > here:
                out.append(f"{module_name(path, src)} ({LAYERS[here]}) imports {imp} ({LAYERS[there]})")
    return sorted(set(out))


def nested_own_imports(src: Path = SRC) -> list[str]:
    """Imports of the package's own modules inside functions or classes: they hide a dependency from a
    reader (and once hid a circle of 13 modules); only heavy optional libraries are imported there."""
    out = []
    for path in sorted((src / "defectkit").rglob("*.py")):
        top, nested = imports_of(path, src, nested=False), imports_of(path, src)
        out += [f"{module_name(path, src)} imports {imp} inside a function" for imp in sorted(nested - top)
                if imp.startswith("defectkit")]
    return out


def test_imports_go_down_the_layers_only_and_none_hides_in_a_function():
    assert upward_imports() == [] and nested_own_imports() == []
    layers = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert layers == set(LAYERS)  # a new folder takes its place in LAYERS


def test_the_layer_check_finds_a_planted_upward_import(tmp_path):
    pkg = tmp_path / "defectkit"
    for d in ("core", "train", "ensemble"):
        (pkg / d).mkdir(parents=True)
        (pkg / d / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "core/config.py").write_text("from defectkit.core import checks\n\n\ndef f():\n"
                                        "    from defectkit.ensemble.methods import METHODS\n")
    (pkg / "train/fold.py").write_text("from defectkit.core import config\nfrom ..ensemble import pseudo\n")
    assert upward_imports(tmp_path) == [
        "defectkit.core.config (core) imports defectkit.ensemble.methods (ensemble)",
        "defectkit.core.config (core) imports defectkit.ensemble.methods.METHODS (ensemble)",
        "defectkit.train.fold (train) imports defectkit.ensemble (ensemble)",
        "defectkit.train.fold (train) imports defectkit.ensemble.pseudo (ensemble)"]
    assert nested_own_imports(tmp_path) == [
        "defectkit.core.config imports defectkit.ensemble.methods inside a function",
        "defectkit.core.config imports defectkit.ensemble.methods.METHODS inside a function"]


def test_scripts_only_call_the_library_and_nothing_imports_a_script():
    scripts = sorted(p for p in SRC.glob("*.py"))
    assert {p.stem for p in scripts} >= {"train", "blend", "run", "prepare", "predict", "export"}
    for p in scripts:
        tree = ast.parse(p.read_text())
        defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        assert not defs and len(p.read_text().splitlines()) < 40, f"{p.name}: a script holds code; move it to defectkit"
        assert any(i.startswith(f"defectkit.cli.{p.stem}") for i in imports_of(p, SRC)), p.name
    names = {p.stem for p in scripts}
    for mod, imps in import_graph().items():
        assert not {i.split(".")[0] for i in imps} & names, mod


def test_make_imitates_the_other_cpu_that_the_benchmarks_measure():
    from defectkit.testing import OTHER_CPU
    line = next(ln for ln in (ROOT / "Makefile").read_text().splitlines() if ln.startswith("OTHER_CPU :="))
    assert dict(kv.split("=", 1) for kv in line.split(":=", 1)[1].split()) == OTHER_CPU
