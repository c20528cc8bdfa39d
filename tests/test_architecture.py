"""Import directions hold, and nothing imports in a circle, static or through the registry and importlib.

Layers (docs/architecture.md): ``toolkit.nn`` (plain torch) never imports ``toolkit.data``, ``toolkit.tasks`` or
anything above it; ``toolkit.data`` never imports ``toolkit.nn``; ``toolkit.predict`` (and what it imports) never
reaches Lightning, ``toolkit.tasks``, ``serving`` or ``pipelines``. Edges are every ``import`` (module level and
inside functions; ``TYPE_CHECKING`` blocks excluded), ``importlib.import_module`` of a string literal naming one of
our modules, and ``load_piece(entry.<field>)``, which imports the modules the task table names in that field.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import ROOT
from toolkit.registry import INPUT_KINDS, TASKS, TaskEntry

PACKAGES = ("toolkit", "pipelines", "serving")
REGISTRY_FIELDS = set(TaskEntry.__dataclass_fields__)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}


def _ours(name: str) -> str | None:
    """The module of ours that an imported name refers to (a module, or a package for ``from pkg import x``)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _under_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def edges_of(name: str) -> tuple[set[str], set[str]]:
    """``(our modules, external top-level packages)`` that ``name`` imports."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    ours, external = set(), set()

    def add(target: str) -> None:
        module = _ours(target)
        if module is not None:
            ours.add(module)
        elif target.split(".")[0] not in PACKAGES:
            external.add(target.split(".")[0])

    for node in ast.walk(tree):
        if _under_type_checking(node, parents):
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:  # `from pkg import module` imports the module itself
                add(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module)
        elif isinstance(node, ast.Call):
            function = ast.unparse(node.func)
            if function.endswith("import_module") and node.args and isinstance(node.args[0], ast.Constant):
                add(node.args[0].value)
            elif function.endswith("load_piece") and node.args and isinstance(node.args[0], ast.Attribute) \
                    and node.args[0].attr in REGISTRY_FIELDS:
                for entry in TASKS.values():
                    reference = getattr(entry, node.args[0].attr)
                    if reference:
                        add(reference.partition(":")[0])
    if name == "toolkit.cli":  # its subcommand table: module names resolved with importlib.import_module
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in MODULES:
                add(node.value)
    ours.discard(name)
    return ours, external


GRAPH = {name: edges_of(name) for name in MODULES}


def reachable(start: str) -> tuple[set[str], set[str]]:
    seen, external, stack = {start}, set(), [start]
    while stack:
        ours, outside = GRAPH[stack.pop()]
        external |= outside
        for module in ours - seen:
            seen.add(module)
            stack.append(module)
    return seen, external


def layer(name: str) -> str:
    return ".".join(name.split(".")[:2]) if name.startswith("toolkit.") else name.split(".")[0]


def test_the_graph_sees_static_lazy_and_registry_imports():
    assert "toolkit.nn.encoder" in GRAPH["toolkit.nn.classifier"][0]
    assert "toolkit.predict.classify" in GRAPH["toolkit.predict.loader"][0]  # load_piece(TASKS[...].predictor)
    assert "toolkit.specs.tag" in GRAPH["toolkit.specs"][0]  # load_piece(TASKS[...].spec)
    assert "serving.cli" in GRAPH["toolkit.cli"][0]  # the subcommand table
    assert "pipelines.distributed" in GRAPH["pipelines.label"][0]  # imported inside a function


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("toolkit.nn")))
def test_nn_takes_tensors_and_imports_no_data_or_task_code(name):
    ours, _ = GRAPH[name]
    assert {layer(m) for m in ours} <= {"toolkit.nn", "toolkit.errors"}, ours


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("toolkit.data")))
def test_data_never_imports_nn(name):
    assert not any(layer(m) == "toolkit.nn" for m in reachable(name)[0]), name


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("toolkit.predict")))
def test_predict_never_reaches_lightning_tasks_serving_or_pipelines(name):
    ours, external = reachable(name)
    assert not {"pytorch_lightning", "lightning"} & external, name
    assert not [m for m in ours if layer(m) in ("toolkit.tasks", "serving", "pipelines") or m == "toolkit.training"]


def test_no_import_cycles():
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node][0]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in sorted(GRAPH):
        if name not in index:
            visit(name)
    assert cycles == []


def test_every_task_entry_names_real_pieces():
    from toolkit.registry import load_piece

    for task, entry in TASKS.items():
        assert load_piece(entry.spec).task == task
        assert load_piece(entry.predictor).task == task
        assert load_piece(entry.module).task == task
        assert entry.input_kind in INPUT_KINDS
        for field in ("report", "spacy_component", "onnx_export", "options", "generation"):
            if getattr(entry, field):
                assert load_piece(getattr(entry, field)) is not None, (task, field)
        by_layer = defaultdict(list)
        for field in ("spec", "data", "module", "predictor", "result"):
            by_layer[layer(getattr(entry, field).partition(":")[0])].append(field)
        assert set(by_layer) == {"toolkit.specs", "toolkit.data", "toolkit.tasks", "toolkit.predict"}


def own_modules(entry: TaskEntry) -> set[str]:
    """The modules that are a task's own: those its entry names (spec, data, module, predictor, report…)."""
    return {value.partition(":")[0] for value in vars(entry).values() if isinstance(value, str) and ":" in value}


FROZEN_HISTORY = {"toolkit.meta"}
"""Format-1 migrations describe files written by toolkit 0.1.0 (a tag model kept its scheme twice): history, not
dispatch, so they may name the task they were written for."""


def task_name_comparisons(name: str) -> list[str]:
    """``x == "tag"``, ``task in ("lm", ...)``, ``match``-free: every comparison of a task name literal in ``name``."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        literals = [item for operand in operands for item in
                    ([operand] if isinstance(operand, ast.Constant) else getattr(operand, "elts", []))
                    if isinstance(item, ast.Constant) and item.value in TASKS]
        if literals:
            found.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_outside_a_tasks_own_files_compares_a_task_name():
    """Adapters and shared layers dispatch on a task's entry (input kind, options, generation…), not on its name:
    a new task then needs no edit in them (issue 24)."""
    owners = {task: own_modules(entry) for task, entry in TASKS.items()}
    offending = []
    for name in sorted(MODULES):
        if name in FROZEN_HISTORY or name == "toolkit.registry":
            continue
        for comparison in task_name_comparisons(name):
            compared = {value for value in TASKS if repr(value) in comparison.partition(": ")[2]}
            if not all(name in owners[task] for task in compared):
                offending.append(comparison)
    assert offending == []


def test_the_comparison_finder_sees_what_it_must(tmp_path):
    """The check above fails on the old dispatch (a guard against a finder that never finds anything)."""
    probe = tmp_path / "probe.py"
    probe.write_text('def f(task, predictor, kind):\n    if task == "tag" or predictor.task in ("lm", "x"):\n'
                     '        return 1\n    return kind == "text" and task != "nothing"\n', encoding="utf-8")
    MODULES["tests.probe"] = probe
    try:
        assert len(task_name_comparisons("tests.probe")) == 2
    finally:
        del MODULES["tests.probe"]


@pytest.mark.parametrize("name", ["toolkit.artifact", "toolkit.meta"])
def test_the_artifact_layer_owns_meta_json_and_never_reaches_the_specs(name):
    ours, _ = reachable(name)
    assert not [m for m in ours if layer(m) in ("toolkit.specs", "toolkit.nn", "toolkit.tasks", "toolkit.predict")]


RAY_MODULES = {"pipelines.ray_files", "pipelines.ray_label", "pipelines.ray_sources"}
"""The `[ray]` extra's modules: imported only by `bilstm label --engine ray` (inside its run function)."""


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n not in RAY_MODULES | {"toolkit.cli",
                                                                                     "pipelines.label_cli"}))
def test_nothing_but_the_ray_engine_reaches_ray(name):
    """Ray is an optional extra: no module of the core, the spaCy component or the service imports it, even lazily
    (toolkit.cli reaches every subcommand; pipelines.label_cli imports the Ray engine inside `run`)."""
    ours, external = reachable(name)
    assert "ray" not in external and not ours & RAY_MODULES, name


def test_the_ray_probe_sees_the_lazy_import():
    assert "pipelines.ray_files" in GRAPH["pipelines.label_cli"][0] and "ray" in reachable("toolkit.cli")[1]


def test_importing_the_toolkit_the_spacy_component_and_the_service_leaves_ray_unimported():
    """At run time too: `import toolkit`, the spaCy component, the service and the whole `bilstm` parser."""
    code = ("import sys, toolkit, toolkit.spacy_component, serving.service, pipelines.label, toolkit.cli; "
            "toolkit.cli._parser(); print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
