from setuptools import setup

# Everything else is in pyproject.toml; cffi's setuptools hook needs this keyword.
setup(cffi_modules=["build_ffi.py:ffibuilder"])
