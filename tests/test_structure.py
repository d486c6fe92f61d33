"""The package's import structure: imports flow one way (no two modules of lstm_np import each other, directly
or through others) and no module imports a _private name from another; and the tests' own: no test module
imports from another (shared helpers live in tests/helpers.py). Read from the source with `ast`."""
import ast
import os

import lstm_np

PACKAGE = os.path.dirname(os.path.abspath(lstm_np.__file__))
TESTS = os.path.dirname(os.path.abspath(__file__))


def package_imports():
    """{module: [(imported module, [names])]} for every relative or lstm_np import in the package's modules,
    function-level imports included."""
    graph = {}
    for fname in sorted(os.listdir(PACKAGE)):
        if not fname.endswith(".py"):
            continue
        module = fname[:-3]
        tree = ast.parse(open(os.path.join(PACKAGE, fname), encoding="utf-8").read(), fname)
        edges = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module:                  # from .cell import x
                    edges.append((node.module.split(".")[0], [a.name for a in node.names]))
                elif node.level == 1:                                # from . import tasks
                    edges += [(a.name, []) for a in node.names]
                elif node.level == 0 and (node.module or "").startswith("lstm_np."):
                    edges.append((node.module.split(".")[1], [a.name for a in node.names]))
            elif isinstance(node, ast.Import):
                edges += [(a.name.split(".")[1], []) for a in node.names if a.name.startswith("lstm_np.")]
        graph[module] = edges
    return graph


def test_no_module_imports_a_private_name_from_another():
    private = [f"{module}.py imports {name} from {target}.py"
               for module, edges in package_imports().items() for target, names in edges
               for name in names if name.startswith("_")]
    assert not private, "private names imported across modules: " + "; ".join(private)


def test_no_import_cycle_between_modules():
    graph = {m: sorted({t for t, _ in edges if t != m}) for m, edges in package_imports().items()}
    state, cycles = {}, []                  # depth-first search: 1 on the current path, 2 done

    def visit(module, path):
        state[module] = 1
        for target in graph.get(module, []):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles: " + "; ".join(cycles)


def test_no_test_module_imports_from_another():
    found = []
    for fname in sorted(os.listdir(TESTS)):
        if fname.endswith(".py"):
            tree = ast.parse(open(os.path.join(TESTS, fname), encoding="utf-8").read(), fname)
            for node in ast.walk(tree):
                modules = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                           else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
                found += [f"{fname} imports {m}" for m in modules if m.split(".")[0].startswith("test_")]
    assert not found, "test modules importing from test modules (move the helper to tests/helpers.py): " + "; ".join(found)
