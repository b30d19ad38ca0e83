# keras-dcn developer commands. Each target only redoes what is out of date.
#   make install   virtual environment (.venv), pinned dependencies, op library
#   make wheel     dist/: an sdist and the wheel built from it (KERAS_DCN_CUDA=0: CPU only)
#   make sdist     dist/: the sdist alone
#   make test      the test suite (pytest), after the deployment checks' packages
#                  (requirements-deploy.txt)
#   make test-fast the suite without the tests marked slow, then the backend tests
#                  (about 10 minutes on 2 cores, 5 of them the JAX run)
#   make test-backends  the layer tests under Keras' JAX and PyTorch backends (part of
#                  make test and make test-fast)
#   make fuzz      100,000 fuzzed calls of the ops (FUZZ_CALLS=...); none may crash or hang
#   make sanitize  the op library built with AddressSanitizer and UndefinedBehaviorSanitizer,
#                  then the op tests and 10,000 fuzzed calls against it
#   make bench     benchmarks (tables printed, JSON in benchmarks/results/)
#   make bazel     the op library built with Bazel (bazel-bin/tf_ops/libkeras_dcn_ops.so)
#   make test-bazel  the op tests against the Bazel-built library
#   make demo      DCNv2 Mask R-CNN on synthetic data: train, evaluate, export, draw
#   make ablation  regular / DCNv1 / DCNv2 (with and without mimicking) side by side
#   make analysis  spatial support (Figures 1 and 2 of the paper) of regular / DCNv1 /
#                  DCNv2: runs/demo plus regular and DCNv1 trained like it if missing

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
DEPS_STAMP := $(VENV)/.deps-installed
DEPLOY_STAMP := $(VENV)/.deploy-deps-installed
LIBRARY := keras_dcn/libkeras_dcn_ops.so
OP_SOURCES := $(shell find tf_ops/cc -name '*.cc' -o -name '*.h' -o -name '*.cuh')
BAZEL_LIBRARY := bazel-bin/tf_ops/libkeras_dcn_ops.so
PYTEST_ARGS ?=
# The whole suite runs in this many pytest-xdist workers (modules sharing a trained
# run are kept on one worker by their `xdist_group` mark); 1 runs it in one process.
PYTEST_WORKERS ?= 2
PARALLEL := $(if $(filter-out 1,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadgroup)
# oneDNN's CPU kernels also where TensorFlow leaves them off by default (see models/__init__.py).
export TF_ENABLE_ONEDNN_OPTS ?= 1

.PHONY: install wheel sdist test test-fast test-backends test-ops fuzz sanitize bench bazel test-bazel demo ablation analysis clean

install: $(LIBRARY)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(DEPS_STAMP): requirements.txt | $(PY)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	touch $@

$(DEPLOY_STAMP): requirements-deploy.txt $(DEPS_STAMP)
	$(PY) -m pip install -r requirements-deploy.txt
	touch $@

$(LIBRARY): $(DEPS_STAMP) $(OP_SOURCES) setup.py pyproject.toml
	$(PY) -m pip install --no-build-isolation --no-deps -e .
	touch $@

# python -m build: the sdist, then the wheel from the unpacked sdist, against the
# TensorFlow of .venv. The metadata the sdist step leaves in the tree would shadow
# the installed package's (the tests put the tree on sys.path), so it goes.
wheel: $(DEPS_STAMP)
	rm -rf dist
	$(PY) -m build --no-isolation --outdir dist .
	rm -rf keras_dcn.egg-info

sdist: $(DEPS_STAMP)
	rm -f dist/*.tar.gz
	$(PY) -m build --no-isolation --sdist --outdir dist .
	rm -rf keras_dcn.egg-info

# pytest exits with 5 when it collects no test: that is a failure here too.
define run_pytest
	$(PY) -m pytest $(1) $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "error: pytest collected no tests in $(1)"; fi; \
	exit $$status
endef

# The layer tests written for every Keras backend, run again under JAX and PyTorch
# (the whole suite runs them under TensorFlow).
BACKEND_TESTS := tests/layers/test_keras_backends.py tests/ops/test_keras_composite.py
define run_backend_tests
	KERAS_BACKEND=jax $(call run_pytest,$(BACKEND_TESTS))
	KERAS_BACKEND=torch $(call run_pytest,$(BACKEND_TESTS))
endef

test: install $(DEPLOY_STAMP)
	$(call run_pytest,tests $(PARALLEL))
	$(run_backend_tests)

test-fast: install $(DEPLOY_STAMP)
	$(call run_pytest,tests -m 'not slow' $(PARALLEL))
	$(run_backend_tests)

test-backends: install $(DEPLOY_STAMP)
	$(run_backend_tests)

test-ops: install
	$(call run_pytest,tests/ops)

FUZZ_CALLS ?= 100000
fuzz: install
	mkdir -p build
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m tests.ops.fuzz --calls $(FUZZ_CALLS) --log build/fuzz.log

# The sanitized library loads into an uninstrumented Python with the sanitizer
# runtimes preloaded; leak checking is off (the interpreter itself never frees
# everything), any report ends the process with an error.
SANITIZED_LIBRARY := build/sanitize/keras_dcn/libkeras_dcn_ops.so
SANITIZER_ENV := export KERAS_DCN_OPS_LIBRARY=$(abspath $(SANITIZED_LIBRARY)) \
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
sanitize: $(DEPS_STAMP)
	KERAS_DCN_SANITIZE=1 KERAS_DCN_CUDA=0 $(PY) setup.py -q build_ext \
		--build-lib build/sanitize --build-temp build/sanitize-obj
	$(SANITIZER_ENV); $(call run_pytest,tests/ops)
	$(SANITIZER_ENV); $(PY) -m tests.ops.fuzz --calls 10000 --log build/fuzz-sanitized.log

bench: install
	$(PY) -m benchmarks.run

$(BAZEL_LIBRARY): $(DEPS_STAMP) $(OP_SOURCES) WORKSPACE tf_ops/BUILD
	PYTHON_BIN_PATH=$(abspath $(PY)) tools/bazel_build.sh
	touch $@  # Bazel keeps the old file when a rebuilt one is identical

bazel: $(BAZEL_LIBRARY)

test-bazel: $(BAZEL_LIBRARY) install
	KERAS_DCN_OPS_LIBRARY=$(abspath $(BAZEL_LIBRARY)) $(MAKE) --no-print-directory test-ops

demo: install
	$(PY) -m models.demo $(DEMO_ARGS)

ablation: install
	$(PY) -m models.ablation $(ABLATION_ARGS)

analysis: install
	$(PY) -m models.analyze $(ANALYSIS_ARGS)

clean:
	rm -rf build dist *.egg-info $(LIBRARY) bazel-*
