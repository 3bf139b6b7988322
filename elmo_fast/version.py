"""The package version (one place, read by ``elmo_fast.__version__`` and ``elmo-fast env``)."""
__version__ = "0.1.0"
