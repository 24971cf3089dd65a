"""The project reads, writes and overrides no private name of faust, mode, aiokafka or redis.

A leading underscore is how these libraries say "not an API": code that
touches one breaks on their next release without notice. The one exception
is the set of abstract methods a Faust store is made to implement
(``SerializedStore._get`` and its siblings), the extension point Faust
documents for stores.

The scan is static. A private name counts as the libraries' when one of
their modules defines it (a function, class, attribute or variable) and no
module of the project does; names both define (``_get``, ``_retry``) are
checked where they can be told apart, in the classes the project derives
from the libraries' classes.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import textwrap
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = ("faust", "mode", "aiokafka", "redis")
#: Packages imported to inspect the classes they derive from library classes.
PACKAGES = ("ltv", "state", "streams")
#: Every folder of the project's Python code.
FOLDERS = ("ltv", "state", "streams", "bench", "tests", "scripts")
#: Faust's documented extension point: what a ``SerializedStore`` implements.
STORE_METHODS = frozenset(
    {
        "_get",
        "_set",
        "_del",
        "_iterkeys",
        "_itervalues",
        "_iteritems",
        "_size",
        "_contains",
        "_clear",
    }
)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _defined(tree: ast.AST) -> set[str]:
    """Private names ``tree`` defines: functions, classes, attributes, variables."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return {name for name in names if _private(name)}


def _parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError):
        return None


def _library_files() -> Iterator[Path]:
    for library in LIBRARIES:
        # The package's own path: faust's module object has no __spec__.
        locations = importlib.import_module(library).__path__
        assert locations, library
        for location in locations:
            yield from Path(location).rglob("*.py")


def _project_files() -> list[Path]:
    return sorted(path for folder in FOLDERS for path in (ROOT / folder).rglob("*.py"))


@cache
def _library_names() -> frozenset[str]:
    names: set[str] = set()
    for path in _library_files():
        tree = _parse(path)
        if tree is not None:
            names |= _defined(tree)
    return frozenset(names)


@cache
def _project_names() -> frozenset[str]:
    names: set[str] = set()
    for path in _project_files():
        tree = _parse(path)
        assert tree is not None, path
        names |= _defined(tree)
    return frozenset(names)


def _uses(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, name) of every private name ``tree`` reads, writes or imports from a library."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            yield node.lineno, node.attr
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) > 1:
                name = node.args[1]
                if (
                    isinstance(name, ast.Constant)
                    and isinstance(name.value, str)
                    and _private(name.value)
                ):
                    yield node.lineno, name.value
        elif isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[0] in LIBRARIES:
                for part in parts:
                    if _private(part):
                        yield node.lineno, node.module
                for alias in node.names:
                    if _private(alias.name):
                        yield node.lineno, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] in LIBRARIES and any(_private(p) for p in parts):
                    yield node.lineno, alias.name


def _class_names(cls: type) -> set[str]:
    """Private names the source of ``cls`` defines: its methods, class attributes, ``self.x``."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {name for name in vars(cls) if _private(name)}
    (node,) = ast.parse(textwrap.dedent(source)).body
    assert isinstance(node, ast.ClassDef)
    names: set[str] = set()
    for item in node.body:
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(item.name)
        elif isinstance(item, ast.Assign):
            names.update(t.id for t in item.targets if isinstance(t, ast.Name))
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            names.add(item.target.id)
    for sub in ast.walk(node):
        if (
            isinstance(sub, ast.Attribute)
            and isinstance(sub.ctx, ast.Store)
            and isinstance(sub.value, ast.Name)
            and sub.value.id == "self"
        ):
            names.add(sub.attr)
    return {name for name in names if _private(name)}


def _derived_classes() -> Iterator[type]:
    """Classes defined by the project's packages with a library class among their bases."""
    for package in PACKAGES:
        module = importlib.import_module(package)
        names = [package, *(m.name for m in pkgutil.walk_packages(module.__path__, package + "."))]
        for name in names:
            for cls in vars(importlib.import_module(name)).values():
                if not inspect.isclass(cls) or cls.__module__ != name:
                    continue
                if any(base.__module__.split(".")[0] in LIBRARIES for base in cls.__mro__[1:]):
                    yield cls


def test_no_private_name_of_the_libraries_is_read_written_or_imported() -> None:
    theirs = _library_names() - _project_names()
    found = []
    for path in _project_files():
        tree = _parse(path)
        assert tree is not None
        for line, name in _uses(tree):
            if name in theirs or "." in name:
                found.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    assert not found, "private names of faust/mode/aiokafka/redis used:\n" + "\n".join(found)


def test_no_class_overrides_a_private_name_of_its_library_bases() -> None:
    from faust.stores.base import SerializedStore

    found = []
    classes = list(_derived_classes())
    assert classes, "the scan found no class derived from a library class"
    for cls in classes:
        inherited: set[str] = set()
        for base in cls.__mro__[1:]:
            if base.__module__.split(".")[0] in LIBRARIES:
                inherited |= _class_names(base)
        allowed = STORE_METHODS if issubclass(cls, SerializedStore) else frozenset()
        for name in sorted((_class_names(cls) & inherited) - allowed):
            found.append(f"{cls.__module__}.{cls.__qualname__}.{name}")
    assert not found, "overrides of private library names:\n" + "\n".join(found)
