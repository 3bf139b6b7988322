"""Build script for elmo_fast.

The Python package lives in ``elmo_fast/``; the top-level ``kernels/`` folder (Triton kernels) is
installed as ``elmo_fast.kernels``. Compiled extensions (``csrc/``) are added here as they land.
"""
from setuptools import setup

setup(
    packages=["elmo_fast", "elmo_fast.reference", "elmo_fast.ops", "elmo_fast.modules", "elmo_fast.train", "elmo_fast.kernels"],
    package_dir={"elmo_fast.kernels": "kernels"},
    package_data={"elmo_fast": ["data/default/*.json", "data/default/*.hdf5", "data/default/*.txt", "data/default/*.md"]},
    include_package_data=True,
)
