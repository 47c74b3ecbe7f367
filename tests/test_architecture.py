"""The layout's rules, read from the imports of every module (module level and inside functions):

1. only the command-line layer (``blendgan/cli/``) builds argument parsers;
2. nothing in the package outside it imports it, and nothing but it imports the web page;
3. no module imports another module's ``_private`` names (nor reaches them as attributes of an
   imported module, nor patches them by name): checked in the package, the tests, the drop-in
   scripts and the tools;
4. the package's modules import each other in no cycle.

Each rule is also run on small made-up trees that break it, so that a checker that has gone
blind fails here too.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "blendgan"
PARSER_CALLS = {"ArgumentParser", "add_argument", "add_subparsers", "add_parser", "add_argument_group",
                "add_mutually_exclusive_group", "parse_args", "parse_known_args"}


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@dataclass
class Module:
    name: str                      # dotted, e.g. blendgan.jobs.transfer ("" for files outside the package)
    path: Path
    tree: ast.Module
    is_package: bool = False
    imports: list[tuple[str, str | None, int]] = field(default_factory=list)  # (module, name or None, line)


class Tree:
    """The Python files of a project: ``files`` maps a path relative to ``root`` to its source."""

    def __init__(self, root: Path, files: dict[str, str]):
        self.root = root
        self.modules: dict[str, Module] = {}
        self.others: list[Module] = []
        for rel, source in sorted(files.items()):
            path = Path(rel)
            tree = ast.parse(source, filename=rel)
            if path.parts[0] == PACKAGE:
                parts = list(path.with_suffix("").parts)
                is_package = parts[-1] == "__init__"
                name = ".".join(parts[:-1] if is_package else parts)
                module = Module(name, path, tree, is_package)
                self.modules[name] = module
            else:
                module = Module("", path, tree)
                self.others.append(module)
        for module in self.all():
            module.imports = list(self._imports(module))

    @classmethod
    def of_project(cls, root: Path = ROOT) -> "Tree":
        files = {}
        for folder in (PACKAGE, "tests", "scripts", "tools"):
            for path in (root / folder).rglob("*.py"):
                if "__pycache__" not in path.parts:
                    files[str(path.relative_to(root))] = path.read_text(encoding="utf-8")
        return cls(root, files)

    def all(self) -> list[Module]:
        return list(self.modules.values()) + self.others

    def _base(self, module: Module, node: ast.ImportFrom) -> str:
        if node.level == 0:
            return node.module or ""
        package = module.name if module.is_package else module.name.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        return f"{package}.{node.module}" if node.module else package

    def _imports(self, module: Module):
        """(imported module, imported name or None, line) for every import statement anywhere in it."""
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield alias.name, None, node.lineno
            elif isinstance(node, ast.ImportFrom):
                base = self._base(module, node)
                for alias in node.names:
                    yield base, alias.name, node.lineno

    def target(self, base: str, name: str | None) -> str:
        """The module an import binds: ``pkg.name`` when that is a module, else ``pkg``."""
        if name is not None and f"{base}.{name}" in self.modules:
            return f"{base}.{name}"
        return base

    def module_aliases(self, module: Module) -> dict[str, str]:
        """Local names bound to modules of the package by ``module``'s imports."""
        aliases = {}
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in self.modules and alias.asname:
                        aliases[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom):
                base = self._base(module, node)
                for alias in node.names:
                    if f"{base}.{alias.name}" in self.modules:
                        aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
        return aliases


def in_layer(name: str, layer: str) -> bool:
    return name == layer or name.startswith(layer + ".")


def in_cli(name: str) -> bool:
    """The command-line layer: ``blendgan.cli`` and ``python -m blendgan`` (``blendgan.__main__``)."""
    return in_layer(name, f"{PACKAGE}.cli") or name == f"{PACKAGE}.__main__"


# -- the rules --------------------------------------------------------------------------------------
def parser_builders(tree: Tree) -> list[str]:
    """Rule 1: package modules outside the CLI layer that build argument parsers."""
    found = []
    for m in tree.modules.values():
        if in_cli(m.name):
            continue
        for node in ast.walk(m.tree):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called in PARSER_CALLS:
                    found.append(f"{m.path}:{node.lineno} calls {called}")
    return found


def layer_breaches(tree: Tree) -> list[str]:
    """Rule 2: package modules importing the CLI from outside it, or the web page from outside
    the web page and the CLI."""
    found = []
    for m in tree.modules.values():
        for base, name, line in m.imports:
            target = tree.target(base, name)
            if in_layer(target, f"{PACKAGE}.cli") and not in_cli(m.name):
                found.append(f"{m.path}:{line} imports the command line ({target})")
            if in_layer(target, f"{PACKAGE}.web") and not (in_layer(m.name, f"{PACKAGE}.web") or in_cli(m.name)):
                found.append(f"{m.path}:{line} imports the web page ({target})")
    return found


def private_reaches(tree: Tree) -> list[str]:
    """Rule 3: imports of another module's private names, private attributes of imported
    package modules, and private names patched by name on them."""
    found = []
    for m in tree.all():
        for base, name, line in m.imports:
            if any(is_private(part) for part in base.split(".")):
                found.append(f"{m.path}:{line} imports private module {base}")
            elif name is not None and is_private(name) and tree.target(base, name) != m.name:
                found.append(f"{m.path}:{line} imports {name} from {base}")
        aliases = tree.module_aliases(m)
        for node in ast.walk(m.tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and is_private(node.attr)):
                found.append(f"{m.path}:{node.lineno} reaches {aliases[node.value.id]}.{node.attr}")
            if (isinstance(node, ast.Call) and len(node.args) >= 2 and isinstance(node.args[0], ast.Name)
                    and node.args[0].id in aliases and isinstance(node.args[1], ast.Constant)
                    and isinstance(node.args[1].value, str) and is_private(node.args[1].value)):
                found.append(f"{m.path}:{node.lineno} names {aliases[node.args[0].id]}.{node.args[1].value}")
    return found


def import_cycles(tree: Tree) -> list[list[str]]:
    """Rule 4: cycles among the package's modules (one per strongly connected component)."""
    graph = {name: sorted({tree.target(b, n) for b, n, _ in m.imports if tree.target(b, n) in tree.modules}
                          - {name}) for name, m in tree.modules.items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


# -- the project ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def project() -> Tree:
    return Tree.of_project()


def test_only_the_command_line_builds_argument_parsers(project):
    assert parser_builders(project) == []


def test_nothing_below_imports_the_command_line_or_the_web_page(project):
    assert layer_breaches(project) == []


def test_no_module_reaches_another_modules_private_names(project):
    assert private_reaches(project) == []


def test_the_package_has_no_import_cycles(project):
    assert import_cycles(project) == []


def test_the_tree_is_read_whole(project):
    """The checks see the layers they guard (a wrong root would pass every rule vacuously)."""
    names = set(project.modules)
    assert {"blendgan", "blendgan.cli", "blendgan.web", "blendgan.jobs", "blendgan.session"} <= names
    assert len(project.modules) > 40 and len(project.others) > 15
    edges = sum(len(m.imports) for m in project.modules.values())
    assert edges > 200


# -- the checker on trees that break each rule -----------------------------------------------------
def made_up(**files: str) -> Tree:
    return Tree(ROOT, {path.replace("__", "/").replace("/init", "/__init__") + ".py": text
                       for path, text in files.items()})


def test_rule_1_sees_a_parser_outside_the_command_line():
    tree = made_up(blendgan__init="", blendgan__jobs="import argparse\np = argparse.ArgumentParser()\n",
                   blendgan__cli__init="import argparse\np = argparse.ArgumentParser()\n")
    assert parser_builders(tree) == ["blendgan/jobs.py:2 calls ArgumentParser"]


def test_rule_2_sees_the_library_importing_the_command_line_or_the_web_page():
    tree = made_up(blendgan__init="", blendgan__cli__init="from ..web import page\n",
                   blendgan__web__init="", blendgan__web__page="",
                   blendgan__align="def f():\n    from .cli import main\n",
                   blendgan__session="from .web.page import build\n")
    assert sorted(layer_breaches(tree)) == ["blendgan/align.py:2 imports the command line (blendgan.cli)",
                                            "blendgan/session.py:1 imports the web page (blendgan.web.page)"]


def test_rule_3_sees_private_names_imported_reached_or_patched():
    tree = made_up(blendgan__init="", blendgan__io="_CACHE = {}\n",
                   blendgan__jobs="from .io import _CACHE\n",
                   tests__test_io="from blendgan import io\nio._CACHE.clear()\n",
                   tests__test_jobs="from blendgan import io\ndef t(monkeypatch):\n"
                                    "    monkeypatch.setattr(io, '_CACHE', {})\n")
    assert sorted(private_reaches(tree)) == ["blendgan/jobs.py:1 imports _CACHE from blendgan.io",
                                             "tests/test_io.py:2 reaches blendgan.io._CACHE",
                                             "tests/test_jobs.py:3 names blendgan.io._CACHE"]


def test_rule_4_sees_a_cycle_through_an_import_inside_a_function():
    tree = made_up(blendgan__init="", blendgan__a="from . import b\n", blendgan__b="from . import c\n",
                   blendgan__c="def late():\n    from .a import f\n", blendgan__d="from . import a\n")
    assert import_cycles(tree) == [["blendgan.a", "blendgan.b", "blendgan.c"]]
