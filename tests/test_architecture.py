"""The architecture's rules (issue 15), checked on the source: who may call what, module sizes, what experiment
modules may import, and no import cycle. Each test names the offending files, so a failure says what to move."""

import ast
import re
from pathlib import Path

import revcurse

PACKAGE = Path(revcurse.__file__).parent
EXPERIMENTS = PACKAGE / "experiments"
MAX_MODULE_LINES = 500
MAX_EXPERIMENT_LINES = 300  # an experiment declares its data; under 300 lines, strictly
# The one place each may be called (relative to src/revcurse).
ONLY_IN = {
    "loglikelihood(": {"probe.py"},
    "ttest_rel": {"metrics.py"},
    "binomtest": {"metrics.py"},
    "run_folder(": {"records.py"},
    "train_model(": {"runner.py"},
    "build_tiny_model(": {"runner.py"},
    "ProcessPoolExecutor(": {"executors.py"},  # sweep cells and seeds run elsewhere through revcurse.executors
}
# What an experiment module must not import: it declares data; the runner trains, probes, scores and records.
FORBIDDEN_IN_EXPERIMENTS = {"train", "probe", "metrics", "records", "report", "runner", "model"}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def module_name(path: Path) -> str:
    parts = ["revcurse", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def calls(text: str, needle: str) -> list[str]:
    """Lines naming ``needle`` outside comments, method definitions (``def loglikelihood(``) excluded."""
    found = []
    for line in text.splitlines():
        code = line.split("#", 1)[0]
        if needle in code and not re.search(rf"\bdef {re.escape(needle)}", code):
            found.append(line.strip())
    return found


def test_shared_steps_are_called_in_one_module_each():
    misplaced = {}
    for path in modules():
        text = path.read_text(encoding="utf-8")
        for needle, allowed in ONLY_IN.items():
            if relative(path) not in allowed and calls(text, needle):
                misplaced.setdefault(needle, []).append(relative(path))
    assert misplaced == {}, f"called outside their one module: {misplaced}"


def test_the_rule_scanner_sees_calls_and_skips_definitions():
    assert calls("    def loglikelihood(self, requests):", "loglikelihood(") == []
    assert calls("    scores = backend.loglikelihood(requests)", "loglikelihood(") != []
    assert calls("    # backend.loglikelihood(requests) is asked in probe.py", "loglikelihood(") == []


def test_no_module_over_500_lines_and_experiments_under_300():
    lines = {relative(p): len(p.read_text(encoding="utf-8").splitlines()) for p in modules()}
    long = {name: n for name, n in lines.items() if n > MAX_MODULE_LINES}
    assert long == {}, f"modules over {MAX_MODULE_LINES} lines: {long}"
    experiments = {relative(p): len(p.read_text(encoding="utf-8").splitlines()) for p in EXPERIMENTS.glob("*.py")}
    assert experiments, "no experiment module found"
    too_long = {name: n for name, n in experiments.items() if n >= MAX_EXPERIMENT_LINES}
    assert too_long == {}, f"experiment modules of {MAX_EXPERIMENT_LINES} lines or more: {too_long}"


def imports(path: Path, skip_type_checking: bool = True) -> set[str]:
    """The revcurse modules ``path`` imports, anywhere in it (inside functions too).

    ``from a.b import c`` counts as importing ``a.b.c`` when that is a module, else ``a.b``. Imports under
    ``if TYPE_CHECKING:`` are skipped: they never run, so they cannot form a cycle (the experiments name the
    config class that is built from their registry that way).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    if skip_type_checking:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    known = {module_name(p) for p in modules()}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x / from .base import y
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {name for name in found if name in known and name != module_name(path)}


def test_experiment_modules_import_no_training_probing_scoring_or_records():
    """Neither directly (type-only imports included) nor through a module they import at run time (a data reader
    may be imported only if it imports none of these either; the config named for types is not followed)."""
    forbidden = {f"revcurse.{name}" for name in FORBIDDEN_IN_EXPERIMENTS}
    graph = import_graph()
    found = {}
    for path in sorted(EXPERIMENTS.glob("*.py")):
        reached, todo = imports(path, skip_type_checking=False), [*imports(path)]
        while todo:
            module = todo.pop()
            reached.add(module)
            todo += [target for target in graph.get(module, ()) if target not in reached]
        bad = sorted(reached & forbidden)
        if bad:
            found[relative(path)] = bad
    assert found == {}, f"experiment modules importing what the runner does (directly or through others): {found}"


def import_graph() -> dict[str, set[str]]:
    return {module_name(path): imports(path) for path in modules()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted: the import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
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
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_a_cycle_through_three_modules():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_lazy_imports_count_as_edges():
    graph = import_graph()
    assert "revcurse.runner" in graph["revcurse.compare"]
    assert "revcurse.paper_format" in graph["revcurse.experiments.celebrities"]  # imported inside a function


def test_no_import_cycle_among_revcurse_modules_lazy_imports_included():
    assert cycles(import_graph()) == []
