"""The package's import structure: no module imports one that (directly or not) imports it back, counting the
imports inside functions too, so that every name travels downward from the command line to the model."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def import_graph(package="recbole_biao"):
    """``{module: set of the package's modules it imports}`` from the sources (``import`` and ``from ... import``
    statements anywhere in the file)."""
    modules = {}
    for folder, _, names in os.walk(os.path.join(ROOT, package)):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                modules[dotted[: -len(".__init__")] if dotted.endswith(".__init__") else dotted] = path
    graph = {}
    for module, path in modules.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                candidates = [[f"{node.module}.{a.name}", node.module] for a in node.names]
            elif isinstance(node, ast.Import):
                candidates = [[a.name] for a in node.names]
            else:
                continue
            for names in candidates:  # `from a.b import c`: the module a.b.c if it is one, else a.b
                found = next((n for n in names if n in modules), None)
                if found and found != module:
                    edges.add(found)
        graph[module] = edges
    return graph


def cycles(graph):
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_planted_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_has_no_import_circle():
    graph = import_graph()
    assert len(graph) > 40 and "recbole_biao.files" in graph["recbole_biao.compat"]  # (the scan sees imports)
    assert cycles(graph) == []


def test_the_floor_modules_import_nothing_of_the_package():
    graph = import_graph()
    assert graph["recbole_biao.files"] == set() and graph["recbole_biao.errors"] == set()


# private names of other libraries (os._exit, RecBole's Dataset._fill_nan that the package patches, a ctypes
# library's _name) and of the benchmark's own timing class
NOT_THE_PACKAGES = {"_exit", "_fill_nan", "_name", "_nested"}


def test_tests_and_benchmarks_use_the_public_api():
    private, from_benchmarks = [], []
    for folder in ("tests", "benchmarks"):
        for name in sorted(os.listdir(os.path.join(ROOT, folder))):
            if not name.endswith(".py"):
                continue
            with open(os.path.join(ROOT, folder, name), encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                names = [node.attr] if isinstance(node, ast.Attribute) else \
                    [a.name for a in node.names] if isinstance(node, ast.ImportFrom) and \
                    (node.module or "").startswith("recbole_biao") else []
                private += [f"{folder}/{name}: {n}" for n in names
                            if n.startswith("_") and not n.startswith("__") and n not in NOT_THE_PACKAGES]
                if folder == "tests" and isinstance(node, ast.ImportFrom) and (node.module or "").startswith("benchmarks"):
                    from_benchmarks.append(f"tests/{name}")
    assert private == [] and from_benchmarks == []


def untyped_public_functions(folder):
    """``["path:line name"]`` of the functions under ``folder`` whose name has no leading underscore and that
    annotate neither their return nor all of their parameters (``self`` / ``cls`` aside)."""
    found = []
    for base, _, names in os.walk(folder):
        for name in sorted(n for n in names if n.endswith(".py")):
            path = os.path.join(base, name)
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                    params = [a for a in node.args.args + node.args.kwonlyargs if a.arg not in ("self", "cls")]
                    if node.returns is None and not (params and all(a.annotation is not None for a in params)):
                        found.append(f"{os.path.relpath(path, ROOT)}:{node.lineno} {node.name}")
    return found


def test_every_public_function_of_the_package_is_typed(tmp_path):
    assert untyped_public_functions(os.path.join(ROOT, "recbole_biao")) == []
    (tmp_path / "m.py").write_text("def a(x: int):\n    pass\n\ndef b(x):\n    pass\n\ndef _c(x):\n    pass\n")
    assert [f.split()[-1] for f in untyped_public_functions(str(tmp_path))] == ["b"]  # the scan finds them
