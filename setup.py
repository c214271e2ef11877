# Only the cffi extension lives here; everything else is in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["csrc/build_ffi.py:make_ffi"])
