"""The package's layout shows its layers: upper layers import lower ones, never the reverse, and nothing imports
in a circle. Imports are read from the source (function-level and ``TYPE_CHECKING`` imports included), so a cycle
hidden inside a function is found too."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "flowkit"

# Lowest first. A module may import its own layer and those below it.
LAYERS = [
    ("ground", ["flowkit.errors", "flowkit.registry"]),
    ("runtime", ["flowkit.runtime"]),
    ("math", ["flowkit.paths", "flowkit.models", "flowkit.couplings", "flowkit.timesteps", "flowkit.conditioning"]),
    ("samplers", ["flowkit.samplers"]),
    ("metrics", ["flowkit.metrics"]),
    ("data", ["flowkit.data"]),
    ("methods", ["flowkit.methods"]),
    ("config", ["flowkit.config"]),
    ("teacher", ["flowkit.teacher"]),
    ("training", ["flowkit.training"]),
    ("interface", ["flowkit.interface", "flowkit.__main__", "flowkit"]),
]


def modules() -> dict[str, Path]:
    found = {}
    for file in PACKAGE.rglob("*.py"):
        parts = list(file.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = file
    return found


MODULES = modules()


def owner(name: str) -> str:
    """The flowkit module an imported name lives in (``flowkit.paths.base.PATHS`` -> ``flowkit.paths.base``)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imports(module: str) -> set[str]:
    """The flowkit modules ``module`` imports anywhere in its source."""
    file = MODULES[module]
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            found |= {owner(a.name) for a in node.names if a.name.split(".")[0] == "flowkit"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            if base.split(".")[0] == "flowkit":
                found |= {owner(f"{base}.{a.name}") for a in node.names}
    return found - {module}


def layer(module: str) -> int:
    """The index of the layer ``module`` belongs to (its longest matching prefix)."""
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    assert best is not None, f"{module} belongs to no layer: add it to LAYERS"
    return best[0]


def test_no_module_imports_in_a_circle():
    graph = {m: imports(m) for m in MODULES}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_layers_import_only_downward():
    upward = [f"{m} ({LAYERS[layer(m)][0]}) imports {d} ({LAYERS[layer(d)][0]})"
              for m in sorted(MODULES) for d in sorted(imports(m))
              if layer(d) > layer(m) and not (m == "flowkit" and d.startswith("flowkit."))]  # the lazy public API
    assert not upward, "\n".join(upward)


def test_at_most_ten_modules_at_the_top_and_each_subpackage_says_its_layer():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 10, top
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "layer" in doc and "import" in doc.lower(), f"{init.parent.name}/__init__.py does not say its layer and imports"


# A fresh interpreter that has imported the third-party packages (the slow part) but no flowkit module forks
# once per module: each child imports that one module first, as a fresh interpreter would.
ALONE = """
import importlib, os, sys, traceback
import lightning, numpy, omegaconf, ot, rich, torch, torchdiffeq, typer  # noqa: F401
assert not any(m.split(".")[0] == "flowkit" for m in sys.modules)
for module in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(module)
        except BaseException:
            print(module + ": " + traceback.format_exc().strip().splitlines()[-1], flush=True)
            os._exit(1)
        os._exit(0)
    os.waitpid(pid, 0)
"""


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    names = sorted(m for m in MODULES if m != "flowkit.__main__")  # __main__ runs the command line
    proc = subprocess.run([sys.executable, "-c", ALONE, *names], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "", proc.stdout
