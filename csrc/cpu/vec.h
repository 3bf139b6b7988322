// Portable 8-lane float vectors (GCC/Clang vector extensions) and the few transcendental functions
// the fused epilogues need, written without libm so that they vectorise.
//
// Every hot loop is compiled twice: once for the baseline ISA and once with AVX2 (ELMO_FAST_ISA_CLONES),
// selected at load time by the compiler's ifunc resolver. The same source then runs with 256-bit
// registers on AVX2 machines and with two 128-bit halves (SSE2 / NEON) elsewhere.
#pragma once

#include <cstdint>
#include <cstring>

namespace elmo_fast::cpu {

#if defined(__x86_64__) && defined(__GNUC__) && defined(__ELF__)
#define ELMO_FAST_ISA_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define ELMO_FAST_ISA_CLONES
#endif

#define ELMO_FAST_INLINE inline __attribute__((always_inline))

constexpr int64_t kLanes = 8;
typedef float vfloat __attribute__((vector_size(32)));
typedef int32_t vint __attribute__((vector_size(32)));

ELMO_FAST_INLINE vfloat vload(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

ELMO_FAST_INLINE void vstore(float* p, vfloat v) {
  std::memcpy(p, &v, sizeof(v));
}

ELMO_FAST_INLINE vfloat vsplat(float x) {
  return vfloat{} + x;
}

// 16-lane vectors for code compiled for AVX-512 (target attributes; see lstmp.cpp's gate epilogue).
typedef float vfloat16 __attribute__((vector_size(64)));
typedef int32_t vint16 __attribute__((vector_size(64)));

// The integer vector of the same lanes as a float vector.
template <typename V>
struct IntOf;
template <>
struct IntOf<vfloat> {
  using type = vint;
};
template <>
struct IntOf<vfloat16> {
  using type = vint16;
};

// The functions below are templates over the vector type: the same operations in the same order
// for 8 or 16 lanes, so (without FMA contraction, which none of the targets used here enables)
// every lane gets the same bits whatever the width.
template <typename V>
ELMO_FAST_INLINE V vmax(V a, V b) {
  return a > b ? a : b;
}

template <typename V>
ELMO_FAST_INLINE V vclamp(V x, float lo, float hi) {
  x = x < lo ? V{} + lo : x;
  return x > hi ? V{} + hi : x;
}

// exp(x) by Cody-Waite range reduction and a degree-6 polynomial (Cephes expf): max relative
// error ~1.5e-7 over [-87, 88]; inputs are clamped to that range (exp(-87) ~ 1.6e-38).
template <typename V>
ELMO_FAST_INLINE V vexp(V x) {
  using I = typename IntOf<V>::type;
  x = vclamp(x, -87.0f, 88.0f);
  // 1.5 * 2^23: adding it rounds to the nearest integer and leaves that integer in the low mantissa bits.
  const float round_magic = 12582912.0f;
  V t = x * 1.44269504088896341f + round_magic;
  V n = t - round_magic;
  V r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  V p = V{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  I bits = (I)t;
  bits = (bits - 0x4B400000 + 127) << 23;
  return p * (V)bits;
}

template <typename V>
ELMO_FAST_INLINE V vsigmoid(V x) {
  return 1.0f / (1.0f + vexp(-x));
}

// tanh with small relative error over the whole range (Cephes tanhf's split): an odd minimax
// polynomial x + x^3 P(x^2) for |x| < 0.625, else sign(x) (1 - 2 / (exp(2|x|) + 1)).
// NOTE: max relative error 1.4e-7 against long double on every 7th float32 in [1e-3, 9] (a one-off
// sweep of this header, not committed); the old 2 sigmoid(2x) - 1 form had 1.2e-4 near 0 and an
// absolute error of 1.8e-7 near |x| = 4. tests/test_float64_accuracy.py bounds the relative error
// through elmo_fast::char_cnn's tanh activation.
template <typename V>
ELMO_FAST_INLINE V vtanh(V x) {
  const V z = x < 0.0f ? -x : x;
  const V s = z * z;
  V p = V{} + -5.70498872745e-3f;
  p = p * s + 2.06390887954e-2f;
  p = p * s - 5.37397155531e-2f;
  p = p * s + 1.33314422036e-1f;
  p = p * s - 3.33332819422e-1f;
  const V small = p * s * z + z;
  const V large = 1.0f - 2.0f / (vexp(2.0f * z) + 1.0f);
  const V t = z < 0.625f ? small : large;
  return x < 0.0f ? -t : t;
}

template <typename V>
ELMO_FAST_INLINE V vrelu(V x) {
  return x > 0.0f ? x : V{};
}

// Loads and stores of a tail shorter than one vector go through a zero-padded buffer.
ELMO_FAST_INLINE vfloat vload_n(const float* p, int64_t n) {
  float buf[kLanes] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  std::memcpy(buf, p, sizeof(float) * n);
  return vload(buf);
}

ELMO_FAST_INLINE void vstore_n(float* p, vfloat v, int64_t n) {
  float buf[kLanes];
  vstore(buf, v);
  std::memcpy(p, buf, sizeof(float) * n);
}

}  // namespace elmo_fast::cpu
