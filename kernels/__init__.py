"""Triton kernels of elmo_fast, installed as ``elmo_fast.kernels`` (kernels and launchers only).

Each launcher's tile choice is a public function of its module, so tools can list the launch
configurations without launching: :func:`elmo_fast.kernels.lstmp.lstmp_tiles`,
:func:`elmo_fast.kernels.char_cnn.char_cnn_tiles`, :func:`elmo_fast.kernels.highway.highway_tiles`.
"""
