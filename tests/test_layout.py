"""The house rules, checked on the source: one job per module, arrows that go down only.

- no import cycle among jaxcnn modules, imports inside functions counted too;
- at most a handful of jaxcnn imports inside functions (the rest at the top of each module);
- no module over 500 lines;
- `import jaxcnn` and its subpackages do not import TensorFlow.
"""

import ast
import os
import subprocess
import sys

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jaxcnn")
MAX_LINES = 500
MAX_INNER_IMPORTS = 10


def _modules() -> dict[str, str]:
    """Dotted module name -> file, for every .py file of the package."""
    out = {}
    for folder, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
                out[rel.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _targets(module: str, node, is_package: bool) -> list[str]:
    """The jaxcnn modules an import statement loads (a name imported from a package may be a module)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        names = [f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source for a in node.names]
    out = []
    for name in names:
        while name not in MODULES and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in MODULES:
            out.append(name)
    return out


def _import_graph():
    """(edges module -> imported modules, [(module, function, target)] imports inside functions)."""
    edges, inner = {m: set() for m in MODULES}, []
    for module, path in MODULES.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        is_package = path.endswith("__init__.py")
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges[module].update(t for t in _targets(module, node, is_package) if t != module)
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        inner += [(module, fn.name, t) for t in _targets(module, node, is_package)]
    return edges, inner


def _cycles(edges) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), ignoring a package's
    own imports of its submodules (a package __init__ re-exporting them is not a loop)."""
    def children(v):
        return [w for w in edges[v] if not w.startswith(v + ".")]

    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in children(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(edges)))
    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_among_jaxcnn_modules():
    edges, _ = _import_graph()
    assert _cycles(edges) == []


def test_jaxcnn_modules_are_imported_at_the_top():
    _, inner = _import_graph()
    listing = "\n".join(f"  {m}.{fn} imports {t}" for m, fn, t in inner)
    assert len(inner) <= MAX_INNER_IMPORTS, f"{len(inner)} imports of jaxcnn modules inside functions:\n{listing}"


def test_every_module_is_at_most_500_lines():
    sizes = {}
    for module, path in MODULES.items():
        with open(path) as f:
            sizes[module] = sum(1 for _ in f)
    assert {m: n for m, n in sizes.items() if n > MAX_LINES} == {}


def test_import_jaxcnn_gives_every_subpackage_on_first_use_and_leaves_tensorflow_out():
    code = ("import sys; sys.modules['tensorflow'] = None\n"
            "import jaxcnn\n"
            "assert 'jaxcnn.train' not in sys.modules\n"
            "assert callable(jaxcnn.weights.load_imported) and callable(jaxcnn.train.Trainer)\n"
            "assert jaxcnn.models.get_model('mnist_cnn') is not None and jaxcnn.testing.assert_trains\n"
            "assert jaxcnn.data.load_dataset and jaxcnn.keras.from_keras and jaxcnn.checkpoint.load_weights\n"
            "assert 'tensorflow' not in {m for m in sys.modules if sys.modules[m] is not None}\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(PACKAGE))
