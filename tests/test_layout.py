"""The package's layout as the README states it, over every module: no private name imported from another module,
the science never imports the pipeline, imports at the top of modules (except the pipeline's and the command
line's lazy ones), no import cycles, and every module imports on its own. (Modules are split by concept, not by
a line count.)"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "stagewise"
MODULES = sorted(PACKAGE.rglob("*.py"))
# The pipeline and the command line import heavy libraries (papermill, dask, jupyter-book) only when a command
# needs them, so `python -m stagewise params` answers at once; the science imports at the top.
LAZY = {PACKAGE / "__main__.py", *(PACKAGE / "pipeline").glob("*.py")}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, tree: ast.Module | None = None) -> list[tuple[ast.ImportFrom | ast.Import, str]]:
    """(node, absolute module) for every import of ``path`` (parsed as ``tree``) inside the package."""
    found = []
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    tree = tree if tree is not None else ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            if target.startswith("stagewise"):
                found.append((node, target))
        elif isinstance(node, ast.Import):
            found += [(node, alias.name) for alias in node.names if alias.name.startswith("stagewise")]
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_imports_no_private_names(path):
    for node, target in imports(path):
        if isinstance(node, ast.ImportFrom):
            private = [a.name for a in node.names if a.name.startswith("_") and not a.name.endswith("__")]
            assert not private, f"imports private {private} from {target}: make them public where they live"


SCIENCE = [p for p in MODULES if p not in LAZY]


@pytest.mark.parametrize("path", SCIENCE, ids=lambda p: str(p.relative_to(ROOT)))
def test_science_never_imports_the_pipeline_and_imports_at_the_top(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    type_checking = {id(n) for block in tree.body if isinstance(block, ast.If)
                     and "TYPE_CHECKING" in ast.unparse(block.test) for n in block.body}
    for node, target in imports(path, tree):
        assert not target.startswith("stagewise.pipeline"), f"the science imports {target}"
        assert id(node) in top | type_checking, f"line {node.lineno}: import {target} at the top of the module"


def test_no_import_cycles_between_modules():
    graph = {module_name(p): {t for _, t in imports(p)} for p in MODULES}
    modules = set(graph)

    def resolve(target: str) -> str | None:  # `from stagewise.lm import x` names the package or a module
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    edges = {m: {r for t in ts if (r := resolve(t)) and r != m and not m.startswith(r + ".")}
             for m, ts in graph.items()}  # a module importing its own package's __init__ is not a cycle
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for n in edges[m]:
            if state.get(n) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path[path.index(n):], n]))
            if n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])


def test_every_module_imports_on_its_own():
    names = [module_name(p) for p in MODULES if p.name != "__main__.py"]
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
    done = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
