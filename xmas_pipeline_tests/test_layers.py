"""The package's imports point one way: core <- adapters <- services <- dagster_defs <- the
code location and the CLI; the intake beside, never touching Dagster. Read from the source
(every `import`, at module level and inside functions), so a new upward import, a cycle, a
private name taken from another module or a function-level import fails here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "xmas_pipeline"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

# What each layer may import from the package (its own layer included).
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "adapters": {"core", "adapters"},
    "services": {"core", "adapters", "services"},
    "settings": {"core", "settings"},
    "intake": {"core", "adapters", "settings", "intake"},
    "dagster_defs": {"core", "adapters", "services", "settings", "dagster_defs"},
    "top": {"core", "adapters", "services", "settings", "intake", "dagster_defs", "top"},
}
# Outside libraries a layer must not use: the core is pure (no Dagster, no I/O clients),
# and nothing below the Dagster wiring knows Dagster.
_IO = {"httpx", "notion_client", "resend", "sqlalchemy", "starlette", "uvicorn", "psycopg"}
_IO |= {"upath", "fsspec", "s3fs", "boto3", "botocore"}
FORBIDDEN: dict[str, set[str]] = {
    "core": {"dagster", "dagster_postgres", *_IO},
    "adapters": {"dagster", "dagster_postgres"},
    "services": {"dagster", "dagster_postgres"},
    "settings": {"dagster", "dagster_postgres"},
    "intake": {"dagster", "dagster_postgres"},
}
# Function-level imports are allowed only for optional dependencies (none today) and for
# the heavy libraries few runs need, which must be imported only where they are used (or
# for type checkers): matplotlib is a third of a second of every process's start (each run
# worker, each code server) and only the chart assets draw.
OPTIONAL: set[str] = set()
DEFERRED: set[str] = {"matplotlib"}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # a module (of the package, or the top name of a library)
    names: tuple[str, ...]
    line: int
    in_function: bool
    typing_only: bool = False  # under `if TYPE_CHECKING:`


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in ("core", "adapters", "services", "intake", "dagster_defs"):
        return parts[1]
    if module == f"{PACKAGE}.settings":
        return "settings"
    return "top"


def module_name(path: Path, root: Path) -> str:
    relative = path.relative_to(root.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _walk(tree: ast.AST) -> Iterator[tuple[ast.AST, bool, bool]]:
    """Every node, with whether it sits inside a function and whether only type checkers
    see it (`if TYPE_CHECKING:`)."""
    stack: list[tuple[ast.AST, bool, bool]] = [(tree, False, False)]
    while stack:
        node, inside, typing = stack.pop()
        yield node, inside, typing
        nested = inside or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            stack.extend((child, nested, True) for child in node.body)
            stack.extend((child, nested, typing) for child in node.orelse)
            continue
        stack.extend((child, nested, typing) for child in ast.iter_child_nodes(node))


def imports_of(path: Path, root: Path, modules: set[str]) -> list[Import]:
    name = module_name(path, root)
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    for node, inside, typing in _walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(name, alias.name, (), node.lineno, inside, typing))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name if is_package else name.rsplit(".", 1)[0]
                for _ in range(node.level - 1):
                    anchor = anchor.rsplit(".", 1)[0]
                base = f"{anchor}.{base}" if base else anchor
            names = tuple(alias.name for alias in node.names)
            found.append(Import(name, base, names, node.lineno, inside, typing))
            # `from package import submodule` imports the submodule too.
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    submodule = f"{base}.{alias.name}"
                    found.append(Import(name, submodule, (), node.lineno, inside, typing))
    return found


def package_modules(root: Path) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def edges(imports: list[Import], modules: set[str]) -> dict[str, set[str]]:
    """module -> the package modules importing it runs (parent packages' __init__ too)."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for item in imports:
        target = item.target
        while target and target.startswith(PACKAGE):
            if target in modules and target != item.source:
                graph[item.source].add(target)
            target = target.rsplit(".", 1)[0] if "." in target else ""
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def problems(root: Path) -> list[str]:
    modules = package_modules(root)
    names = set(modules)
    imports = [item for path in modules.values() for item in imports_of(path, root, names)]
    out: list[str] = []
    for item in imports:
        where = f"{item.source}:{item.line}"
        top = item.target.split(".")[0]
        if item.in_function and top not in OPTIONAL | DEFERRED:
            out.append(f"{where}: function-level import of {item.target}")
        if top in DEFERRED and not (item.in_function or item.typing_only):
            out.append(f"{where}: module-level import of {item.target} (import it where used)")
        if top == PACKAGE:
            source_layer, target_layer = layer(item.source), layer(item.target)
            if target_layer not in ALLOWED[source_layer]:
                out.append(f"{where}: {source_layer} imports {item.target} ({target_layer})")
            private = [n for n in item.names if n.startswith("_") and n != "__version__"]
            if private and item.target != item.source:
                out.append(f"{where}: imports private {', '.join(private)} from {item.target}")
        elif top in FORBIDDEN.get(layer(item.source), set()):
            out.append(f"{where}: {layer(item.source)} imports {item.target}")
    for component in cycles(edges(imports, names)):
        out.append("import cycle: " + " -> ".join(component))
    return out


def test_the_package_imports_only_downward_without_cycles() -> None:
    assert problems(ROOT) == []


MAX_LINES = 500  # past this a module holds several jobs: split it by what it holds


def test_no_module_is_over_500_lines() -> None:
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for path in ROOT.rglob("*.py")
    }
    assert len(sizes) > 50  # the package was found
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


# -- the checker itself, on a small made-up package ------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / PACKAGE
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for folder in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").touch()
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"core/a.py": "from xmas_pipeline.adapters import b\n", "adapters/b.py": ""},
            "core imports",
        ),
        ({"core/a.py": "import dagster\n"}, "core imports dagster"),
        ({"core/a.py": "import httpx\n"}, "core imports httpx"),
        (
            {"adapters/a.py": "from xmas_pipeline.services.s import f\n", "services/s.py": ""},
            "adapters imports",
        ),
        ({"intake/a.py": "import dagster as dg\n"}, "intake imports dagster"),
        ({"core/a.py": "from xmas_pipeline.core.b import _hidden\n", "core/b.py": ""}, "private"),
        (
            {"core/a.py": "def f():\n    from xmas_pipeline.core import b\n", "core/b.py": ""},
            "function",
        ),
        ({"dagster_defs/a.py": "from matplotlib.figure import Figure\n"}, "module-level"),
        (
            {
                "core/a.py": "from xmas_pipeline.core import b\n",
                "core/b.py": "import xmas_pipeline.core.a\n",
            },
            "import cycle",
        ),
        (
            {
                "adapters/sql/__init__.py": "from xmas_pipeline.adapters.sql.store import S\n",
                "adapters/sql/store.py": "from xmas_pipeline.adapters.sql.engine import E\n",
                "adapters/sql/engine.py": "from xmas_pipeline.adapters.sql.tables import T\n",
                "adapters/sql/tables.py": "",
            },
            "import cycle",
        ),
    ],
)
def test_the_checker_catches(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    found = problems(_tree(tmp_path, files))
    assert found, files
    assert any(expected in line for line in found), found


def test_the_checker_passes_a_clean_tree(tmp_path: Path) -> None:
    files = {
        "core/a.py": "import pandas\nfrom xmas_pipeline.core import b\n",
        "core/b.py": "",
        "adapters/c.py": "import httpx\nfrom xmas_pipeline.core.a import x\n",
        "services/d.py": "from xmas_pipeline.adapters.c import y\n",
        "dagster_defs/e.py": "import dagster\nfrom xmas_pipeline.services import d\n",
        "cli.py": "from xmas_pipeline.dagster_defs import e\n",
        "dagster_defs/f.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from matplotlib.figure import Figure\n"
            "def draw():\n    from matplotlib.figure import Figure\n"
        ),
    }
    assert problems(_tree(tmp_path, files)) == []
