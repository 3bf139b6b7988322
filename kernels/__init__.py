"""Triton kernels of elmo_fast, installed as ``elmo_fast.kernels`` (kernels and launchers only)."""
