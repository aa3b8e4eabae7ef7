"""The floors of the house: a lower floor never imports a higher one (README, Developers)."""

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Lowest first. A module belongs to the floor of its longest matching prefix.
FLOORS = [
    ("shared utilities", ("safeio",)),
    ("data", ("data",)),
    ("models", ("zoo",)),  # layers, models, registry, optimizers
    ("training recipe", ("zoo.training",)),
    ("ensembles", ("ensembles",)),
    ("prediction", ("zoo.prediction",)),  # zoo.predict: models, ensembles and exports
    ("command line and demo", ("zoo.cli", "zoo.__main__")),
]


def _floor(module):
    best, length = None, -1
    for level, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > length:
                best, length = level, len(prefix)
    return best


def _modules():
    for package in ("safeio", "data", "zoo", "ensembles"):
        for root, _, files in os.walk(os.path.join(REPO, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(root, name)
                    module = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                    yield module.removesuffix(".__init__"), path


def _imports(module, path):
    """Every module ``path`` imports, at the top or inside a function."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:  # "from zoo import training" imports zoo.training
                yield f"{base}.{alias.name}", node.lineno


def _upward_imports():
    found = []
    for module, path in _modules():
        own = _floor(module)
        for imported, line in _imports(module, path):
            floor = _floor(imported)
            if floor is None:  # keras, tensorflow, the standard library ...
                continue
            if floor > own:
                found.append(f"{os.path.relpath(path, REPO)}:{line} ({FLOORS[own][0]}) imports "
                             f"{imported} ({FLOORS[floor][0]})")
    return found


def test_no_floor_imports_a_higher_one():
    assert _upward_imports() == []


def test_the_check_sees_imports_inside_functions_and_relative_ones(tmp_path):
    """The checker itself: hidden and relative upward imports are caught."""
    path = tmp_path / "sneaky.py"
    path.write_text("import os\ndef f():\n    from zoo.training import train\n"
                    "from ..ensembles import export\n")
    imports = dict(_imports("data.sneaky", str(path)))
    assert imports == {"os": 1, "zoo.training.train": 3, "ensembles.export": 4}
    assert {m for m in imports if (_floor(m) or 0) > _floor("data.sneaky")} == {
        "zoo.training.train", "ensembles.export"}


@pytest.mark.parametrize("module, floor", [("zoo.models.alexnet", "models"),
                                           ("zoo.prediction", "prediction"),
                                           ("zoo.training.callbacks", "training recipe"),
                                           ("zoo.cli.demo", "command line and demo"),
                                           ("safeio", "shared utilities")])
def test_modules_sit_on_their_floor(module, floor):
    assert FLOORS[_floor(module)][0] == floor
