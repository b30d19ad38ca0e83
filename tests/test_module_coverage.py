"""Every module of `keras_dcn/` and `models/` has a test: a file under `tests/` imports
it, or a test file mirrors its path (`keras_dcn/layers/_gradient_scale.py` ->
`tests/layers/test_gradient_scale.py`, `models/serving/drawing.py` ->
`tests/models/serving/test_drawing.py`; `test_<name>_<topic>.py` counts too)."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
PACKAGES = ("keras_dcn", "models")

# Package `__init__` modules that hold only a docstring and imports: what they
# re-export is tested where it is defined.
REEXPORT_ONLY = {
    "models.analysis",
    "models.common",
    "models.configs",
    "models.data",
    "models.evaluation",
    "models.modeling",
    "models.modeling.backbones",
    "models.modeling.decoders",
    "models.modeling.heads",
    "models.modeling.layers",
    "models.serving",
    "models.tasks",
    "models.training",
}


def _modules():
    """`{dotted name: path}` of every module of the packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imported_by_tests():
    """Dotted names of the package modules that files under `tests/` import."""
    imported = set()
    for path in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
    return imported & set(MODULES)


def _mirrors(module):
    """Test files whose path mirrors `module`'s."""
    parts = module.split(".")
    if parts[0] == "keras_dcn":  # keras_dcn's packages sit directly under tests/
        parts = parts[1:]
    if not parts:
        return []
    folder = TESTS.joinpath(*parts[:-1])
    name = parts[-1].lstrip("_")
    return sorted(folder.glob(f"test_{name}.py")) + sorted(folder.glob(f"test_{name}_*.py"))


def _only_docstring_and_imports(path):
    body = ast.parse(path.read_text()).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return all(isinstance(node, (ast.Import, ast.ImportFrom))
               or (isinstance(node, ast.Assign)
                   and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["__all__"])
               for node in body)


def test_the_packages_are_found():
    assert {"keras_dcn", "keras_dcn.layers._gradient_scale", "models.train",
            "models.serving.detection"} <= set(MODULES)


def test_every_module_is_imported_by_a_test_or_has_a_mirrored_test():
    imported = _imported_by_tests()
    untested = sorted(module for module in MODULES
                      if module not in imported and not _mirrors(module)
                      and module not in REEXPORT_ONLY)
    assert not untested, f"modules without a test: {untested}"


@pytest.mark.parametrize("module", sorted(REEXPORT_ONLY))
def test_exempt_modules_are_package_inits_that_only_import(module):
    path = MODULES[module]
    assert path.name == "__init__.py"
    assert _only_docstring_and_imports(path), f"{path} holds code: it needs a test"
