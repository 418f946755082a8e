"""The native extension and its build modes; metadata lives in pyproject.toml.

BARFAST_DEBUG=1 builds with assertions on and -O0 -g (and Cython bounds checks);
BARFAST_ANNOTATE=1 writes the `cython -a` HTML next to the sources.
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("BARFAST_DEBUG", "") not in ("", "0")

if DEBUG:
    cflags = ["-O0", "-g3", "-UNDEBUG", "-DBARFAST_DEBUG=1"]
    directives = {"boundscheck": True, "wraparound": False, "initializedcheck": True}
else:
    cflags = ["-O2", "-DNDEBUG", "-DBARFAST_DEBUG=0"]
    directives = {"boundscheck": False, "wraparound": False, "initializedcheck": False}

directives.update(language_level=3, cdivision=True, embedsignature=True)

# https in the native loop links OpenSSL (libssl-dev: headers and the unversioned .so).
if not os.path.exists("/usr/include/openssl/ssl.h") and not os.environ.get("BARFAST_OPENSSL_OK"):
    raise SystemExit(
        "barfast: OpenSSL headers not found (install libssl-dev, or set BARFAST_OPENSSL_OK=1 "
        "when they are on the compiler's include path elsewhere)"
    )

ext = Extension(
    "barfast.engine._core",
    sources=["src/barfast/engine/_core.pyx"],
    include_dirs=["src/barfast/engine/include"],
    libraries=["ssl", "crypto"],
    extra_compile_args=cflags + ["-Wno-unused-function"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
)

setup(
    ext_modules=cythonize(
        [ext],
        compiler_directives=directives,
        annotate=os.environ.get("BARFAST_ANNOTATE", "") not in ("", "0"),
        force=DEBUG,
    ),
)
