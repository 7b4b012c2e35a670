"""The layout of stagewise.toy and stagewise.models: every name the chapters, benchmarks and tests use still
resolves (old import paths included), everything public is re-exported, and the science imports neither the
pipeline nor the language-model code, without private cross-module imports or import cycles."""

import ast
import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stagewise import toy

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "stagewise"
# Where names of these modules are used: the chapters, the benchmarks, the other tests, the package itself.
USERS = sorted(
    [*(ROOT / "notebooks").glob("*.md"), *(ROOT / "benchmarks").glob("*.py"), *(ROOT / "tests").rglob("*.py"),
     *PACKAGE.rglob("*.py")]
)
USERS = [p for p in USERS if p.resolve() != Path(__file__).resolve()]
# Old module path → where the code lives now.
#: Paths the known-answer models once had: no shim module keeps them alive.
GONE = ("stagewise.slt", "stagewise.examples", "stagewise.phases")
SCIENCE = sorted([*(PACKAGE / "toy").glob("*.py"), *(PACKAGE / "models").glob("*.py")])
TOY_SUBMODULES = ("data", "dln", "ablation", "theory", "influence")

# `toy.NAME` (not part of a path such as stagewise/toy.py) and `from stagewise.<moved or new module> import …`.
TOY_ATTRIBUTE = re.compile(r"(?<![/\w])toy\.(?!py\b)([A-Za-z_]\w*)")
FROM_IMPORT = re.compile(r"from (stagewise\.(?:toy|models)(?:\.\w+)*) import (\([^)]*\)|[^\n]*)")


def _names(clause: str) -> list[str]:
    clause = re.sub(r"#[^\n]*", "", clause).strip("() \n")
    return [part.split(" as ")[0].strip() for part in clause.split(",") if part.strip()]


def used_names() -> tuple[set[str], dict[str, set[str]]]:
    toy_names, imported = set(), {}
    for path in USERS:
        text = path.read_text(encoding="utf-8")
        toy_names.update(TOY_ATTRIBUTE.findall(text))
        for module, clause in FROM_IMPORT.findall(text):
            imported.setdefault(module, set()).update(_names(clause))
    return toy_names, imported


def test_every_name_the_chapters_use_resolves():
    toy_names, imported = used_names()
    # Not vacuous: chapters 3 and 4 use these, chapters 1, 2 and 5 import the known-answer models.
    assert {"hierarchical_dataset", "train", "leave_one_out", "window_ablation", "toy_bif_trajectory",
            "analytic_influence", "PLAIN_SGLD", "ITEMS"} <= toy_names
    assert {"stagewise.models.slt", "stagewise.models.bif", "stagewise.models.phases"} <= set(imported)
    missing = sorted(name for name in toy_names if not hasattr(toy, name))
    assert not missing, f"stagewise.toy lacks {missing}"
    for module, names in imported.items():
        loaded = importlib.import_module(module)
        # a name is an attribute of the module or one of its submodules (`from stagewise.models import figures`)
        missing = sorted(name for name in names
                         if not hasattr(loaded, name) and importlib.util.find_spec(f"{module}.{name}") is None)
        assert not missing, f"{module} lacks {missing}"


def test_toy_reexports_every_public_definition_of_its_modules():
    assert len(set(toy.__all__)) == len(toy.__all__)
    assert all(hasattr(toy, name) for name in toy.__all__)
    for sub in TOY_SUBMODULES:
        module = importlib.import_module(f"stagewise.toy.{sub}")
        defined = [name for name, obj in vars(module).items()
                   if not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__]
        assert defined, sub
        for name in defined:
            assert name in toy.__all__ and getattr(toy, name) is getattr(module, name), f"toy.{sub}.{name}"
    assert toy.PLAIN_SGLD is importlib.import_module("stagewise.toy.influence").PLAIN_SGLD


@pytest.mark.parametrize("old", GONE)
def test_old_module_paths_are_gone(old):
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(old)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, str]]:
    """(imported module, imported name or "") for every import in the file, relative imports resolved."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(alias.name, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                out.append((base, alias.name))
                if node.module is None:  # from . import submodule
                    out.append((f"{base}.{alias.name}", ""))
    return out


def test_science_imports_neither_the_pipeline_nor_lm_nor_private_names():
    assert len(SCIENCE) >= 11
    for path in SCIENCE:
        for module, name in imports_of(path):
            assert not module.startswith(("stagewise.pipeline", "stagewise.lm")), f"{path.name} imports {module}"
            private = name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
            assert not private, f"{path.relative_to(ROOT)} imports the private {module}.{name}"


def test_no_import_cycles_inside_toy_and_models():
    for package in ("toy", "models"):
        files = sorted((PACKAGE / package).glob("*.py"))
        nodes = {_module_name(p) for p in files}
        edges = {_module_name(p): {m for m, _ in imports_of(p) if m in nodes and m != _module_name(p)}
                 for p in files}
        prefix = f"stagewise.{package}"
        # The package's __init__ imports its modules; no module may import back up through it.
        assert all(prefix not in deps for mod, deps in edges.items() if mod != prefix), edges
        state: dict[str, int] = {}

        def visit(node: str, trail: tuple[str, ...]) -> None:
            assert state.get(node) != 1, f"import cycle: {' → '.join(trail + (node,))}"
            if state.get(node) == 2:
                return
            state[node] = 1
            for dep in edges[node]:
                visit(dep, trail + (node,))
            state[node] = 2

        for node in sorted(nodes):
            visit(node, ())


def test_importing_the_science_loads_no_pipeline_module():
    # The static check above, confirmed on what a fresh interpreter actually loads (transitive imports included).
    code = ("import sys, stagewise.toy, stagewise.models.slt, stagewise.models.bif, stagewise.models.phases; "
            "print(sorted(m for m in sys.modules if m.startswith(('stagewise.pipeline', 'stagewise.lm'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
