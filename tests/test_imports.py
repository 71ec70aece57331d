"""The package's import structure: no module imports one that (directly or not) imports it back, counting the
imports inside functions too, so that every name travels downward from the command line to the model; and no
module imports itself back while it is being imported, counting the ``__init__`` of the packages above each module
imported, which Python runs first (``python -c "import recbole_biao.X"`` works for every module)."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def entered_packages(importer, imported, modules):
    """The packages whose ``__init__`` importing ``imported`` runs first: its parents, except those of the
    importer itself (they are already being imported when it runs)."""
    parts = imported.split(".")
    parents = {".".join(parts[:i]) for i in range(1, len(parts))}
    own = {".".join(importer.split(".")[:i]) for i in range(1, importer.count(".") + 2)}
    return {p for p in parents - own if p in modules}


def run_at_import(tree):
    """The ids of the import statements that run when the module is imported (not those inside functions)."""
    found, todo = set(), list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.add(id(node))
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(node))
    return found


def import_graph(package="recbole_biao", at_import=False):
    """``{module: set of the package's modules it imports}`` from the sources (``import`` and ``from ... import``
    statements anywhere in the file); ``at_import``: what importing the module runs, i.e. the statements outside
    functions and the packages they enter."""
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
        edges, runs = set(), run_at_import(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                candidates = [[f"{node.module}.{a.name}", node.module] for a in node.names]
            elif isinstance(node, ast.Import):
                candidates = [[a.name] for a in node.names]
            else:
                continue
            if at_import and id(node) not in runs:
                continue
            for names in candidates:  # `from a.b import c`: the module a.b.c if it is one, else a.b
                found = next((n for n in names if n in modules), None)
                if found and found != module:
                    edges.add(found)
                    if at_import:
                        edges.update(entered_packages(module, found, modules))
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


def test_an_import_at_module_level_enters_the_packages_above_the_imported_module():
    modules = {"p", "p.a", "p.a.x", "p.b", "p.b.y"}
    assert entered_packages("p.a.x", "p.b.y", modules) == {"p.b"}  # p and p.a are already being imported
    tree = ast.parse("import p.b.y\nclass C:\n    import p.c\ndef f():\n    import p.d\n")
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import)]
    assert {n.names[0].name for n in imports if id(n) in run_at_import(tree)} == {"p.b.y", "p.c"}


def test_the_package_has_no_import_circle():
    graph = import_graph()
    assert len(graph) > 40 and "recbole_biao.files" in graph["recbole_biao.compat"]  # (the scan sees imports)
    assert cycles(graph) == []


def test_no_module_imports_itself_back_while_being_imported():
    graph = import_graph(at_import=True)
    assert "recbole_biao.data" in graph["recbole_biao.model.abstract"]  # (entered by its import of data.dataset)
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
                # `from benchmarks... import x` and `import benchmarks.x` alike (tests run the scripts instead)
                modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                    [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if folder == "tests" and any(m == "benchmarks" or m.startswith("benchmarks.") for m in modules):
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
