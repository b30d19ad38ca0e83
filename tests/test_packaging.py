"""The installed package's metadata tells the truth: its version is
keras_dcn.__version__, it requires TensorFlow of the minor version its library was
built against, its `models` extra covers what models/ imports, and the pinned
development environment (requirements.txt) satisfies every declared range."""

import ast
import importlib.metadata
import pathlib
import re
import sys
import tomllib

import pytest
import tensorflow as tf
from packaging.requirements import Requirement

import keras_dcn

REPO = pathlib.Path(__file__).resolve().parents[1]
# Import names of this repository's own packages.
LOCAL = {"keras_dcn", "models", "tests", "benchmarks", "tools"}


def _name(distribution):
    """A distribution name in PEP 503 normal form."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


@pytest.fixture(scope="module")
def requirements():
    """{normalised name: Requirement} of the installed keras-dcn, core and extras."""
    try:
        declared = importlib.metadata.requires("keras-dcn")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("keras-dcn is not installed (pip install -e . or a wheel)")
    return [Requirement(line) for line in declared]


def _core(requirements):
    return {_name(r.name): r for r in requirements if r.marker is None}


def _extra(requirements, extra):
    return {_name(r.name): r for r in requirements
            if r.marker is not None and r.marker.evaluate({"extra": extra})}


def _pins():
    """{normalised name: version} of requirements.txt's exact pins."""
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if match:
            pins[_name(match.group(1))] = match.group(2)
    return pins


def _imports(folder):
    """Top-level names imported by the Python files under `folder`, without the
    standard library's and this repository's."""
    names = set()
    for path in (REPO / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - LOCAL


def _distributions(import_names):
    """{import name: normalised distribution names providing it} in this environment."""
    providers = importlib.metadata.packages_distributions()
    return {name: {_name(d) for d in providers.get(name, [])} for name in import_names}


def test_version_is_the_distributions():
    assert re.fullmatch(r"\d+\.\d+\.\d+", keras_dcn.__version__)
    try:
        installed = importlib.metadata.version("keras-dcn")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("keras-dcn is not installed (pip install -e . or a wheel)")
    assert installed == keras_dcn.__version__


def test_core_requires_the_tensorflow_minor_and_keras_3(requirements):
    core = _core(requirements)
    assert set(core) == {"tensorflow", "keras", "numpy"}, core
    major, minor = (int(part) for part in tf.__version__.split(".")[:2])
    tensorflow = core["tensorflow"].specifier
    assert tensorflow.contains(f"{major}.{minor}.0")
    assert tensorflow.contains(f"{major}.{minor}.9")
    assert not tensorflow.contains(f"{major}.{minor + 1}.0")
    assert not tensorflow.contains(f"{major}.{minor - 1}.9")
    assert not tensorflow.contains(f"{major}.{minor + 1}.0rc0", prereleases=True)
    keras = core["keras"].specifier
    assert keras.contains("3.99")
    assert not keras.contains("2.15.0") and not keras.contains("4.0")


def test_every_import_is_declared(requirements):
    core, models = _core(requirements), _extra(requirements, "models")
    # keras_dcn.tf_keras, which `import keras_dcn` leaves out, needs tf_keras (models);
    # keras_dcn.onnx_export, which it leaves out too, the `deploy` extra; jax is
    # imported only on Keras' JAX backend, which needs it anyway.
    deploy = _extra(requirements, "deploy")
    for folder, declared in (("keras_dcn", set(core) | {"tf-keras", "jax"} | set(deploy)),
                             ("models", set(core) | set(models))):
        for name, providers in _distributions(_imports(folder)).items():
            assert providers & declared, f"{folder}/ imports {name} ({providers}) undeclared"


def test_pins_satisfy_every_declared_range(requirements):
    pins = _pins()
    for requirement in list(_core(requirements).values()) + list(
            _extra(requirements, "models").values()):
        name = _name(requirement.name)
        assert name in pins, f"requirements.txt pins no {name}"
        assert requirement.specifier.contains(pins[name]), (requirement, pins[name])
    build = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    tensorflow = next(Requirement(r) for r in build if r.startswith("tensorflow"))
    assert tensorflow.specifier.contains(pins["tensorflow"])
    assert tensorflow.specifier.contains(tf.__version__)
