"""Repository rule that wraps the pip-installed TensorFlow for C++ builds.

`tf_configure(name = "local_tensorflow")` asks a Python interpreter where the
installed TensorFlow keeps its C++ headers and `libtensorflow_framework`,
symlinks both into the external repository and writes a BUILD file with:

  * `@local_tensorflow//:tf_headers`               headers (TensorFlow, Eigen,
                                                   Abseil, protobuf, ...) plus
                                                   the preprocessor defines the
                                                   installed build expects;
  * `@local_tensorflow//:libtensorflow_framework`  the shared framework library
                                                   to link custom ops against;
  * `@local_tensorflow//:tensorflow`               both of the above together;

and `version.bzl` defining `TF_VERSION`, the installed TensorFlow's version.

Choice of interpreter, first match wins:
  1. the `PYTHON_BIN_PATH` environment variable (re-runs the rule on change);
  2. `.venv/bin/python` under the main workspace root, if present;
  3. `python3` from `PATH`.
"""

_PYTHON_ENV = "PYTHON_BIN_PATH"

# Printed by the interpreter as KEY=VALUE lines; kept tiny on purpose so that
# it works with any TensorFlow 2.x.  Log noise from TensorFlow goes to stderr.
_QUERY_SCRIPT = """
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
try:
    import tensorflow as tf
except Exception as exc:  # report any import failure verbatim
    sys.stderr.write("cannot import tensorflow: %r\\n" % (exc,))
    sys.exit(3)
print("VERSION=" + tf.__version__)
print("INCLUDE=" + os.path.realpath(tf.sysconfig.get_include()))
print("LIBDIR=" + os.path.realpath(tf.sysconfig.get_lib()))
print("CFLAGS=" + "\\t".join(tf.sysconfig.get_compile_flags()))
print("LDFLAGS=" + "\\t".join(tf.sysconfig.get_link_flags()))
"""

# Used only if the installed TensorFlow does not report them itself.
_DEFAULT_DEFINES = ["_GLIBCXX_USE_CXX11_ABI=1", "EIGEN_MAX_ALIGN_BYTES=64"]
_DEFAULT_FRAMEWORK_LIB = "libtensorflow_framework.so.2"

def _pick_python(rctx):
    """Returns (path, description) of the interpreter to query."""
    from_env = rctx.os.environ.get(_PYTHON_ENV, "").strip()
    if from_env:
        if "/" in from_env:
            python = rctx.path(from_env)
            if not python.exists:
                python = None
        else:
            python = rctx.which(from_env)
        if python == None:
            fail("%s=%s: no such interpreter." % (_PYTHON_ENV, from_env))
        return python, "%s=%s" % (_PYTHON_ENV, from_env)

    workspace_root = rctx.path(Label("@//:WORKSPACE")).dirname
    venv_python = workspace_root.get_child(".venv").get_child("bin").get_child("python")
    if venv_python.exists:
        return venv_python, str(venv_python)

    python = rctx.which("python3")
    if python == None:
        fail("No Python interpreter found: set %s to a Python that has " % _PYTHON_ENV +
             "TensorFlow installed, create .venv/ in the workspace root, or " +
             "put python3 on PATH.")
    return python, "python3 from PATH (%s)" % python

def _parse_output(text):
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in ("VERSION", "INCLUDE", "LIBDIR", "CFLAGS", "LDFLAGS"):
            values[key] = value.strip()
    return values

def _defines_from(cflags):
    defines = [f[2:] for f in cflags if f.startswith("-D") and len(f) > 2]
    return defines or _DEFAULT_DEFINES

def _framework_lib_from(ldflags):
    for flag in ldflags:
        if flag.startswith("-l:"):
            return flag[3:]
    for flag in ldflags:
        if flag.startswith("-l") and "tensorflow_framework" in flag:
            return "lib%s.so" % flag[2:]
    return _DEFAULT_FRAMEWORK_LIB

def _starlark_list(items):
    return "[%s]" % ", ".join(['"%s"' % i.replace("\\", "\\\\").replace('"', '\\"') for i in items])

def _tf_configure_impl(rctx):
    python, python_desc = _pick_python(rctx)

    result = rctx.execute(
        [python, "-c", _QUERY_SCRIPT],
        timeout = 600,
        quiet = True,
    )
    if result.return_code != 0:
        fail(("Could not import TensorFlow with %s (exit code %d).\n" +
              "Install TensorFlow into that interpreter, or point %s at a " +
              "Python that has it.\n--- stderr (tail) ---\n%s") % (
            python_desc,
            result.return_code,
            _PYTHON_ENV,
            "\n".join(result.stderr.strip().splitlines()[-25:]),
        ))

    info = _parse_output(result.stdout)
    for key in ("INCLUDE", "LIBDIR"):
        if not info.get(key):
            fail("TensorFlow query via %s printed no %s.\nstdout:\n%s\nstderr:\n%s" % (
                python_desc,
                key,
                result.stdout,
                result.stderr,
            ))

    include_dir = rctx.path(info["INCLUDE"])
    if not include_dir.get_child("tensorflow").get_child("core").get_child("framework").get_child("op.h").exists:
        fail("TensorFlow include directory %s has no tensorflow/core/framework/op.h; " % include_dir +
             "is this a complete TensorFlow installation?")

    framework_lib = _framework_lib_from(info.get("LDFLAGS", "").split("\t"))
    lib_file = rctx.path(info["LIBDIR"]).get_child(framework_lib)
    if not lib_file.exists:
        fail("%s not found in %s (TensorFlow %s via %s)." % (
            framework_lib,
            info["LIBDIR"],
            info.get("VERSION", "?"),
            python_desc,
        ))

    rctx.symlink(include_dir, "include")
    rctx.symlink(lib_file, "lib/" + framework_lib)

    rctx.template(
        "BUILD",
        rctx.attr._build_tpl,
        substitutions = {
            "%{TF_VERSION}": info.get("VERSION", "unknown"),
            "%{PYTHON}": python_desc,
            "%{DEFINES}": _starlark_list(_defines_from(info.get("CFLAGS", "").split("\t"))),
            "%{FRAMEWORK_LIB}": "lib/" + framework_lib,
        },
        executable = False,
    )
    rctx.file("WORKSPACE", "workspace(name = \"%s\")\n" % rctx.name, executable = False)
    rctx.file(
        "version.bzl",
        "TF_VERSION = \"%s\"\n" % info.get("VERSION", "unknown"),
        executable = False,
    )

tf_configure = repository_rule(
    implementation = _tf_configure_impl,
    environ = [_PYTHON_ENV],
    local = True,
    configure = True,
    attrs = {
        "_build_tpl": attr.label(
            default = Label("//third_party/tensorflow:BUILD.tpl"),
            allow_single_file = True,
        ),
    },
    doc = "Exposes the TensorFlow installed in a local Python to C++ targets.",
)
