"""The package's modules form layers whose imports only point down, with no circle anywhere.

Every import counts, including those inside functions: a lazy import hides a circle from Python
but not from a reader.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import rlrun

PACKAGE = Path(rlrun.__file__).parent

# Lowest first; a module may import its own layer or any layer below it.
LAYERS = [
    ("primitives", {"rlrun.config", "rlrun.stops", "rlrun.quiet", "rlrun.state", "rlrun.nets", "rlrun.cem", "rlrun.logger", "rlrun.lock",
                    "rlrun.console", "rlrun.events"}),
    ("env and data", {"rlrun.envs", "rlrun.envpool_vec", "rlrun.tasks", "rlrun.gym_envs", "rlrun.data", "rlrun.buffers",
                      "rlrun.datasets", "rlrun.memory"}),
    ("algorithms", {"rlrun.algos"}),
    ("assembly", {"rlrun.build", "rlrun.checkpoint", "rlrun.evaluation"}),
    ("the loop", {"rlrun.runner"}),
    ("entry points", {"rlrun.cli", "rlrun.sweep", "rlrun.evaluate", "rlrun.collect", "rlrun.compare", "rlrun.help"}),
]
# What algorithms share; any other algorithm module is one algorithm, which imports no other.
SHARED_ALGO_MODULES = {"rlrun.algos", "rlrun.algos.specs", "rlrun.algos.base", "rlrun.algos.on_policy",
                       "rlrun.algos.fitted_q", "rlrun.algos.imitation"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py"}


def layer_of(module: str) -> int:
    for depth, (_, members) in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in members):
            return depth
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")


def imports_of(module: str) -> set[str]:
    """The rlrun modules `module` imports anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in MODULES and name != module}
    return found


def test_every_module_is_in_a_layer_and_imports_only_its_own_or_lower_layers():
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module in MODULES
        for target in imports_of(module)
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "\n".join(upward)


def test_no_algorithm_imports_another():
    algorithms = {m for m in MODULES if m.startswith("rlrun.algos.") and m not in SHARED_ALGO_MODULES}
    crossing = [f"{m} imports {t}" for m in algorithms for t in imports_of(m) if t in algorithms]
    assert not crossing, "\n".join(crossing)


def test_the_imports_have_no_circle():
    graph = {m: imports_of(m) for m in MODULES}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                raise AssertionError("import circle: " + " -> ".join([*path, module, target]))
            if target not in state:
                visit(target, [*path, module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_the_rules_and_the_checks_before_training_need_no_torch():
    probe = (
        "import sys; import rlrun.algos.specs, rlrun.config, rlrun.envs, rlrun.tasks; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
