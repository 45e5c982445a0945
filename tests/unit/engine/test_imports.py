"""The engine's imports go down its layers (frontends > run > host > model) and form no cycle, counting
the imports inside functions too (a lazy import must not hide a cycle)."""

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[3] / "plugins" / "module_utils" / "engine"
LAYERS = ("model", "host", "run", "frontends")


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ENGINE).with_suffix("").parts)


def _imports(path: Path):
    """The engine modules that `path` imports, anywhere in the file."""
    package = _module_name(path).split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom) or not node.level:
            continue
        base = package[:len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
        if node.module:
            found.add(".".join(base))
        else:  # from . import serve
            found.update(".".join(base + [alias.name]) for alias in node.names)
    return {name for name in found if (ENGINE / (name.replace(".", "/") + ".py")).exists()}


GRAPH = {_module_name(p): _imports(p) for p in ENGINE.rglob("*.py") if p.name != "__init__.py"}


def test_no_import_cycle():
    done, path = set(), []

    def visit(module):
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module):] + [module]))
        if module in done:
            return
        path.append(module)
        for imported in sorted(GRAPH.get(module, ())):
            visit(imported)
        path.pop()
        done.add(module)

    for module in sorted(GRAPH):
        visit(module)


def test_imports_go_down_the_layers():
    upward = {(module, imported) for module, imports in GRAPH.items() for imported in imports
              if LAYERS.index(imported.split(".")[0]) > LAYERS.index(module.split(".")[0])}
    assert not upward, sorted(upward)


def test_the_job_parser_is_below_the_cli_and_jobspec():
    assert "frontends.cli" not in GRAPH["frontends.jobspec"]
    assert "frontends.job_options" in GRAPH["frontends.jobspec"] and "frontends.job_options" in GRAPH["frontends.cli"]


def test_the_unit_tests_mirror_the_layers():
    """A unit test of the engine sits in the folder of the layer it tests."""
    here = Path(__file__).resolve().parent
    assert sorted(p.name for p in here.iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(LAYERS)
