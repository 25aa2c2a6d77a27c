"""Builds the optional C kernel of the proof-of-reserves build (``strongroom.reserves._native``).

Everything else is declared in pyproject.toml. The extension links OpenSSL's libcrypto; where no
C compiler or OpenSSL headers are found, ``optional=True`` lets the install go on without it and
``strongroom.reserves.merkle`` uses its pure-Python path (same bytes, much slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "strongroom.reserves._native",
            sources=["src/strongroom/reserves/_native.c"],
            libraries=["crypto"],
            extra_compile_args=["-O3", "-Wall", "-Wextra"],
            optional=True,
        )
    ]
)
