// The schema of every elmo_fast op, defined once; each device registers its kernels in its own file
// (csrc/cpu/*.cpp: TORCH_LIBRARY_IMPL(elmo_fast, CPU, m)). Fake (meta) kernels are registered from
// Python in elmo_fast/ops/. Semantics: elmo_fast.reference (lstmp_ref, char_cnn_ref, highway_ref).
#include <Python.h>
#include <torch/library.h>

extern "C" {
// `import elmo_fast._C` loads this library, which registers the ops; the module itself is empty.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(elmo_fast, m) {
  m.def(
      "lstmp(Tensor x, Tensor lengths, Tensor w_ih, Tensor w_hh, Tensor bias, Tensor w_proj, Tensor? h0, "
      "Tensor? c0, float? cell_clip, float? proj_clip, bool residual, Tensor? w_ih_packed=None, "
      "Tensor? w_hh_packed=None, Tensor? w_proj_packed=None, Tensor? w_ih_scale=None, Tensor? w_hh_scale=None, "
      "Tensor? w_proj_scale=None) -> (Tensor, Tensor, Tensor)");

  m.def(
      "char_cnn(Tensor char_ids, Tensor char_embed, Tensor[] conv_weights, Tensor[] conv_biases, "
      "str activation, Tensor? filters_packed=None) -> Tensor");
  m.def(
      "highway(Tensor x, Tensor w_transform, Tensor b_transform, Tensor w_carry, Tensor b_carry, "
      "Tensor? w_transform_packed=None, Tensor? w_carry_packed=None, Tensor? w_transform_scale=None, "
      "Tensor? w_carry_scale=None) -> Tensor");
  // x @ weight + bias (bilm-tf's layout: weight is (K, M)); the token encoder's projection.
  // weight_packed may also be a reduced-precision layout (int8 ones with their `weight_scale`), see lstmp.
  m.def("dense(Tensor x, Tensor weight, Tensor bias, Tensor? weight_packed=None, Tensor? weight_scale=None) -> Tensor");
  // A weight (..., K, N) as the 16-column panels (..., ceil(N / 16), K, 16) that the CPU kernels read.
  // Optional `*_packed` arguments take it: pass it to skip packing on every call. For lstmp,
  // w_ih_packed = pack_panels(w_ih.unflatten(-1, (4, C)).transpose(1, 2)) (w_hh alike) and
  // w_proj_packed = pack_panels(w_proj). Packed weights may be bfloat16, or int8 with the scale of
  // every padded column in `*_scale` (int8 value times scale = weight; see elmo_fast.reference.quantize).
  m.def("pack_panels(Tensor weight) -> Tensor");
  // One line per kind of product (fp32, bf16, int8): the CPU micro-kernel that runs it here, and why
  // not a faster one. For `elmo-fast env`.
  m.def("cpu_kernels() -> str[]");
}
