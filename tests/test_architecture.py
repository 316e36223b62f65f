"""The shape of the source tree (issue 14's "how this is checked"), beside lint-imports' contracts:
no import cycle between any two modules (imports inside functions included), no module over
600 lines, and runtime/target names written out only where they belong.

Static: reads the sources and grimp's import graph; imports only the two registries and the
Converter/Runner classes they name (no toolchain). Under a second.
"""
from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest

import vanillanet_edge
from vanillanet_edge.converters.registry import converter_class, target_names
from vanillanet_edge.devices.registry import runner_class, runtime_names

PACKAGE = Path(vanillanet_edge.__file__).resolve().parent
MAX_LINES = 600
REGISTRIES = {"devices/registry.py", "converters/registry.py"}
# Where a name is written out for another reason than naming the backend: (module, name) -> why.
NOT_THE_BACKEND = {
    ("converters/manifest.py", "torch"): "the torch package's version in a manifest's environment",
    ("devices/op_probe.py", "litert"): "the op probe is LiteRT's (LiteRtRunner.op_probe): it loads that runner",
}


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("vanillanet_edge", cache_dir=None)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (or a module importing itself),
    by Tarjan's algorithm, iteratively (no recursion limit to meet)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1 or v in edges[v]:
                        found.append(sorted(component))
    return found


def test_cycle_finder_finds_cycles():
    """The finder itself, on small graphs: a cycle through three modules, a self-import, none."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"a"}, "b": set()}) == [["a"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def _function_level_imports() -> list[tuple[str, str]]:
    """(importer, imported module) for each `from .x import y` / `import x` of our own package
    written inside a function or method."""
    found = []
    for path in _sources():
        importer = _module_name(path)
        package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.ImportFrom):
                    if node.level:
                        base = package.split(".")[:len(package.split(".")) - node.level + 1]
                        target = ".".join(base + ([node.module] if node.module else []))
                    else:
                        target = node.module or ""
                    if target.startswith("vanillanet_edge"):
                        found.append((importer, target, [a.name for a in node.names]))
                elif isinstance(node, ast.Import):
                    found += [(importer, a.name, []) for a in node.names if a.name.startswith("vanillanet_edge.")]
    return found


def test_graph_counts_imports_inside_functions(graph):
    """Most of our imports are lazy (inside functions, so --help stays fast and toolchains load
    only when used): the cycle check below must see them, so check grimp does."""
    lazy = _function_level_imports()
    assert len(lazy) > 50                     # the package imports lazily in many places
    for importer, target, names in lazy:
        candidates = ({target} | {f"{target}.{n}" for n in names}) & graph.modules
        assert any(graph.direct_import_exists(importer=importer, imported=c) for c in candidates), \
            f"grimp does not see {importer} -> {target}"


def test_no_import_cycle_between_modules(graph):
    edges = {m: {i for i in graph.find_modules_directly_imported_by(m) if i in graph.modules}
             for m in graph.modules}
    assert len(edges) == len(_sources())
    assert _cycles(edges) == []


def test_no_source_file_over_600_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in _sources()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"split these modules (at most {MAX_LINES} lines): {long}"


def _families() -> list[tuple[set[str], set[str]]]:
    """(backend names, module stems) per backend: a target with the runtime that runs it, and
    each runtime without a target of its own. The stems are those of the modules the
    registries name; a module or folder whose name starts with one is the backend's own
    (converters/litert_export.py, devices/coreml_mil/...)."""
    families = []
    runtimes = set(runtime_names())
    for target in target_names():
        conv = converter_class(target)
        runtime = conv.runtime
        runtimes.discard(runtime)
        families.append(({target, runtime}, {conv.__module__.rpartition(".")[2],
                                             runner_class(runtime).__module__.rpartition(".")[2]}))
    for runtime in sorted(runtimes):
        families.append(({runtime}, {runner_class(runtime).__module__.rpartition(".")[2]}))
    return families


def test_backend_names_are_written_only_in_their_own_modules_and_the_registries():
    """A runtime or target name as a whole string literal ("onnxruntime", "tflite"...) only in
    that backend's own modules and the two registries: everything else asks the registries
    (a new backend is its own files plus registry lines). Help text and messages mention names
    inside longer strings, which this does not count."""
    families = _families()
    names = {n for family, _ in families for n in family}
    stray = []
    for path in _sources():
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in REGISTRIES:
            continue
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names):
                continue
            own = any(node.value in family and any(p.startswith(s) for p in parts for s in stems)
                      for family, stems in families)
            if not own and (rel, node.value) not in NOT_THE_BACKEND:
                stray.append(f"{rel}:{node.lineno} {node.value!r}")
    assert stray == [], "ask devices/registry.py or converters/registry.py instead: " + ", ".join(stray)
