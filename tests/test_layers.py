"""The layers of the house: every import of every module (those inside functions too) goes down, never up
or sideways. A package that is not placed in a layer here fails the test, so a new one must be placed."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

GROUND = {"schemas", "plumbing"}
MIDDLE = {"curation", "annotation", "training"}
# What each top-level package may import of the project, besides itself. Read top down: a layer may use
# the ones above it in this list and nothing below.
MAY_IMPORT: dict[str, set[str]] = {
    "schemas": set(),  # data contracts: no project package at all
    "plumbing": {"schemas"},  # config, run folders, deps, tables, logging
    "curation": GROUND,  # the middle: never each other
    "annotation": GROUND,
    "training": GROUND,
    "synthetic": GROUND | MIDDLE,  # data generators
    "detector_factory": GROUND | MIDDLE | {"synthetic"},  # trains the models nobody publishes
    "sluice": GROUND | MIDDLE | {"synthetic", "detector_factory"},  # the roof: root CLI and the demo's wiring
}
PRODUCT = set(MAY_IMPORT)
# Beside the house: they may use anything, test fakes included, and the product never imports them.
MAY_IMPORT["benchmarks"] = PRODUCT | {"tests"}
MAY_IMPORT["tests"] = PRODUCT | {"benchmarks"}
PROJECT = set(MAY_IMPORT)


def _imported(tree: ast.AST):
    """(line, top-level module, how it reads) for every absolute import in `tree`, wherever it stands."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0], f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = ", ".join(a.name for a in node.names)
            yield node.lineno, node.module.split(".")[0], f"from {node.module} import {names}"
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")):
            yield node.lineno, node.args[0].value.split(".")[0], f"import_module({node.args[0].value!r})"


def climbing_imports(package: str, source: str, path: str) -> list[str]:
    """`path:line: <import>` for each import in `source` (a module of `package`) of a project package that
    `package` may not use."""
    allowed = MAY_IMPORT[package] | {package}
    return [f"{path}:{line}: `{text}`: {package} may import only {', '.join(sorted(allowed - {package})) or 'no project package'}"
            for line, top, text in _imported(ast.parse(source, filename=path))
            if top in PROJECT and top not in allowed]


def _top_level_packages() -> set[str]:
    return {p.name for p in REPO.iterdir() if (p / "__init__.py").is_file()} | {"tests"}


def test_every_top_level_package_is_placed_in_a_layer():
    unplaced = _top_level_packages() - PROJECT
    assert not unplaced, f"place {sorted(unplaced)} in MAY_IMPORT of {__file__} (which layers may it use?)"
    assert not PROJECT - _top_level_packages(), f"MAY_IMPORT names packages that are gone: {PROJECT - _top_level_packages()}"


def test_the_installed_packages_are_the_product():
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in include} == PRODUCT


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_imports_only_go_down(package):
    found = []
    for path in sorted((REPO / package).rglob("*.py")):
        found += climbing_imports(package, path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    assert not found, "imports that climb or cross layers:\n" + "\n".join(found)


def test_a_climbing_import_is_caught_with_its_file_and_line():
    source = ("import os\n"
              "from schemas.raw import RAW\n"
              "from plumbing import runs\n"
              "\n"
              "def run():\n"
              "    from sluice.cli import app  # the roof, from the middle\n"
              "    import training.config  # a sibling\n"
              "    from tests.fixtures.tiny_clip import write_tiny_open_clip\n"
              "    return importlib.import_module('benchmarks.benchlib')\n")
    found = climbing_imports("curation", source, "curation/jobs/fake.py")
    assert [f.split(": `")[0] for f in found] == ["curation/jobs/fake.py:6", "curation/jobs/fake.py:7",
                                                  "curation/jobs/fake.py:8", "curation/jobs/fake.py:9"]
    assert "`from sluice.cli import app`" in found[0] and "may import only plumbing, schemas" in found[0]
    assert climbing_imports("schemas", "from plumbing.config import load\n", "schemas/x.py")
    assert not climbing_imports("sluice", "from curation.cli import app\nimport synthetic.toy_shapes\n", "sluice/x.py")
    assert climbing_imports("synthetic", "from sluice import demo\n", "synthetic/x.py")
    assert climbing_imports("detector_factory", "from benchmarks.benchlib import log\n", "detector_factory/x.py")
