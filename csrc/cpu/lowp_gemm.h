// Reduced-precision products: bf16 x bf16 and int8 x int8 GEMMs against packed weight panels, the
// arithmetic of weight_precision="bf16" / "int8" (elmo_fast.reference.lowp is their twin in PyTorch).
//
// bf16 products. Weights are bf16 panels with pairs of k interleaved, [..., N / 16, ceil(K / 2), 16, 2]:
// one 64-byte panel row holds k = 2p and 2p + 1 of 16 columns, which is what one vdpbf16ps
// (AVX512-BF16) multiplies with a broadcast pair of activations. The activation rows are rounded to
// bf16 (round to nearest even) once per call; products are exact in fp32 and accumulate in fp32.
//
// int8 products. Weights are int8 q (symmetric per column, scale s_w; elmo_fast.reference.quantize)
// stored as the unsigned bytes q + 128, with quads of k interleaved, [..., N / 16, ceil(K / 4), 16, 4].
// Each activation row is quantised on the fly, symmetric per row: s_a = max|a| / 127,
// qa = round(a * (127 / max|a|)) in [-127, 127] (0 and s_a = 1 for a row of zeros). vpdpbusd
// (AVX512-VNNI) multiplies unsigned by signed bytes, so the weights take the unsigned side:
//   sum_k (q[k, n] + 128) * qa[k] = sum_k q[k, n] qa[k] + 128 * sum_k qa[k],
// and the second term, one integer per row, is subtracted before the fp32 epilogue
//   c[r, n] = float(acc[r, n] - 128 * sum_k qa[r, k]) * (s_a[r] * s_w[n]).
// Putting the zero point on the weights leaves the activations signed and exact, and the
// compensation costs one sum per activation row instead of a stored sum per weight column.
// int32 cannot overflow: |acc| <= K * 255 * 127, under 2^31 for K < 66,000.
//
// Each kernel has a portable twin (used where the CPU lacks the instruction, or with
// ELMO_FAST_DISABLE_AVX512=1) that gives the same bits: identical integers for int8, the same fp32
// additions in the same order for bf16 (see bf16_kernel_generic; denormals aside, which vdpbf16ps
// flushes to zero).
// Every row's result depends on that row only, as for the fp32 panels.
#pragma once

#include <ATen/Parallel.h>

#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "packed_gemm.h"

#if defined(ELMO_FAST_HAVE_AVX2_KERNEL) && (defined(__clang__) || __GNUC__ >= 10)
#define ELMO_FAST_HAVE_LOWP_KERNEL 1
#endif
#if defined(ELMO_FAST_HAVE_LOWP_KERNEL) && (defined(__clang__) || __GNUC__ >= 11)
#define ELMO_FAST_HAVE_AVX_VNNI_KERNEL 1
#endif

namespace elmo_fast::cpu {

// float -> bf16 bits, round to nearest even (NaN stays a quiet NaN), as torch's .to(torch.bfloat16).
ELMO_FAST_INLINE uint16_t bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    return static_cast<uint16_t>((u >> 16) | 0x40u);
  }
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// a[rows, k] -> bf16 bits [rows, ld] (ld = round_up(k, 2)), zero-padded.
inline void round_rows_bf16_generic(const float* a, int64_t lda, int64_t rows, int64_t k, uint16_t* out, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < k; ++i) {
      out[r * ld + i] = bf16_bits(a[r * lda + i]);
    }
    for (int64_t i = k; i < ld; ++i) {
      out[r * ld + i] = 0;
    }
  }
}

// a[rows, k] -> int8 [rows, ld] (ld = round_up(k, 4), zero-padded), each row's scale and its
// compensation 128 * sum(qa) (see the top of this file).
inline void quantize_rows_generic(const float* a, int64_t lda, int64_t rows, int64_t k, int8_t* out, int64_t ld, float* scale, int32_t* comp) {
  // 1.5 * 2^23: adding and subtracting it rounds |x| < 2^22 to the nearest integer, ties to even.
  const float round_magic = 12582912.0f;
  for (int64_t r = 0; r < rows; ++r) {
    const float* ar = a + r * lda;
    float amax = 0.0f;
    for (int64_t i = 0; i < k; ++i) {
      amax = std::max(amax, std::fabs(ar[i]));
    }
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    int32_t sum = 0;
    for (int64_t i = 0; i < k; ++i) {
      const float q = std::min(127.0f, std::max(-127.0f, (ar[i] * inv + round_magic) - round_magic));
      out[r * ld + i] = static_cast<int8_t>(q);
      sum += static_cast<int32_t>(q);
    }
    for (int64_t i = k; i < ld; ++i) {
      out[r * ld + i] = 0;
    }
    scale[r] = amax > 0.0f ? amax / 127.0f : 1.0f;
    comp[r] = 128 * sum;
  }
}

// Portable kernels: c[0:R, 0:16] of one panel. The bf16 one adds, per pair, the odd k's product
// first, then the even one's (both exact in fp32), which is the order of vdpbf16ps (Intel's
// pseudo-code); tests/test_lowp_products.py checks that both kernels give the same bits. NOTE: written with explicit vectors; GCC 12.2 at -O3 auto-vectorised the same loop over
// the interleaved pairs of one panel row wrongly (it doubled the even products).
template <int R>
void bf16_kernel_generic(const uint16_t* a, int64_t lda, const uint16_t* panel, int64_t pairs, float* c, int64_t ldc) {
  vfloat acc[R][2] = {};
  float even[kPanel], odd[kPanel];
  for (int64_t p = 0; p < pairs; ++p) {
    const uint16_t* row = panel + p * 2 * kPanel;
    for (int64_t n = 0; n < kPanel; ++n) {
      even[n] = to_float(row[2 * n]);
      odd[n] = to_float(row[2 * n + 1]);
    }
    const vfloat e0 = vload(even), e1 = vload(even + kLanes), o0 = vload(odd), o1 = vload(odd + kLanes);
    for (int r = 0; r < R; ++r) {
      const vfloat a0 = vsplat(to_float(a[r * lda + 2 * p])), a1 = vsplat(to_float(a[r * lda + 2 * p + 1]));
      acc[r][0] = (acc[r][0] + a1 * o0) + a0 * e0;
      acc[r][1] = (acc[r][1] + a1 * o1) + a0 * e1;
    }
  }
  for (int r = 0; r < R; ++r) {
    vstore(c + r * ldc, acc[r][0]);
    vstore(c + r * ldc + kLanes, acc[r][1]);
  }
}

template <int R>
void u8_kernel_generic(const int8_t* a, int64_t lda, const uint8_t* panel, int64_t quads, const float* row_scale, const int32_t* row_comp,
                       const float* scale, float* c, int64_t ldc) {
  int32_t acc[R][kPanel] = {};
  for (int64_t p = 0; p < quads; ++p) {
    const uint8_t* row = panel + p * 4 * kPanel;
    for (int r = 0; r < R; ++r) {
      const int8_t* ar = a + r * lda + 4 * p;
      for (int64_t n = 0; n < kPanel; ++n) {
        acc[r][n] += row[4 * n] * ar[0] + row[4 * n + 1] * ar[1] + row[4 * n + 2] * ar[2] + row[4 * n + 3] * ar[3];
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int64_t n = 0; n < kPanel; ++n) {
      c[r * ldc + n] = static_cast<float>(acc[r][n] - row_comp[r]) * (row_scale[r] * scale[n]);
    }
  }
}

#ifdef ELMO_FAST_HAVE_LOWP_KERNEL
// Compiled for both instruction sets; each instantiation runs only where the CPU has the one it uses
// (Group 2: AVX512-BF16, Group 4: AVX512-VNNI; the rest is AVX-512F/BW).
#define ELMO_FAST_AVX512_LOWP __attribute__((target("avx512f,avx512bw,avx512bf16,avx512vnni")))

// c[0:R, 0:16 NP] for NP panels `stride` elements apart, `iters` panel rows of Group interleaved k:
// bf16 pairs (Group 2, `a` bf16 bits) or uint8 quads (Group 4, `a` int8, with the rows' scales and
// compensations and the columns' scales for the epilogue). `prefetch` as in panel_kernel_avx2.
template <int R, int NP, int Group, typename A, typename W>
ELMO_FAST_AVX512_LOWP void lowp_kernel_avx512(
    const A* a, int64_t lda, const W* panel, int64_t stride, int64_t iters, const float* row_scale, const int32_t* row_comp,
    const float* scale, float* c, int64_t ldc, const char* prefetch, int64_t every, int64_t burst) {
  static_assert((Group == 2 && sizeof(W) == 2) || (Group == 4 && sizeof(W) == 1), "bf16 pairs or uint8 quads");
  using Acc = std::conditional_t<Group == 2, __m512, __m512i>;
  int64_t countdown = every;
  Acc acc[R][NP];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int q = 0; q < NP; ++q) {
      if constexpr (Group == 2) {
        acc[r][q] = _mm512_setzero_ps();
      } else {
        acc[r][q] = _mm512_setzero_si512();
      }
    }
  }
  for (int64_t p = 0; p < iters; ++p) {
    prefetch_tick(prefetch, countdown, every, burst);
    __m512i b[NP];
#pragma GCC unroll 4
    for (int q = 0; q < NP; ++q) {
      b[q] = _mm512_loadu_si512(panel + q * stride + p * Group * kPanel);
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      // this row's Group activations of the panel row, as one 32-bit lane
      int32_t group;
      std::memcpy(&group, a + r * lda + Group * p, sizeof(group));
      const __m512i av = _mm512_set1_epi32(group);
#pragma GCC unroll 4
      for (int q = 0; q < NP; ++q) {
        if constexpr (Group == 2) {
          acc[r][q] = _mm512_dpbf16_ps(acc[r][q], (__m512bh)av, (__m512bh)b[q]);
        } else {
          // unsigned weight bytes times signed activation bytes, four per int32 lane
          acc[r][q] = _mm512_dpbusd_epi32(acc[r][q], b[q], av);
        }
      }
    }
  }
#pragma GCC unroll 4
  for (int q = 0; q < NP; ++q) {
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      if constexpr (Group == 2) {
        _mm512_storeu_ps(c + r * ldc + q * kPanel, acc[r][q]);
      } else {
        const __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][q], _mm512_set1_epi32(row_comp[r])));
        const __m512 s = _mm512_mul_ps(_mm512_set1_ps(row_scale[r]), _mm512_loadu_ps(scale + q * kPanel));
        _mm512_storeu_ps(c + r * ldc + q * kPanel, _mm512_mul_ps(v, s));
      }
    }
  }
}

inline bool cpu_has_avx512_bf16() {
  static const bool ok = cpu_has_avx512() && __builtin_cpu_supports("avx512bf16");
  return ok;
}

inline bool cpu_has_avx512_bw_vl() {
  static const bool ok = cpu_has_avx512() && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  return ok;
}

// The row conversions with 16 lanes (AVX-512F/BW/VL): the same operations per element as the
// generic ones, so the same bits (the maxima and minima keep std::max / std::min's operand order,
// NaN included; the quantised values are integers, so their conversion to int32 is exact).
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void round_rows_bf16_avx512(const float* a, int64_t lda, int64_t rows, int64_t k, uint16_t* out,
                                                                               int64_t ld) {
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1), quiet = _mm512_set1_epi32(0x40);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < ld; i += 16) {
      const int64_t n = std::min<int64_t>(16, k - i);
      const __mmask16 m = n >= 16 ? static_cast<__mmask16>(0xffff) : n > 0 ? static_cast<__mmask16>((1u << n) - 1) : 0;
      const __m512i u = _mm512_maskz_loadu_epi32(m, a + r * lda + i);
      const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, bias), _mm512_and_si512(_mm512_srli_epi32(u, 16), one)), 16);
      const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs_mask), inf);
      const __m512i bits = _mm512_mask_or_epi32(rounded, nan, _mm512_srli_epi32(u, 16), quiet);
      const int64_t w = std::min<int64_t>(16, ld - i);
      _mm256_mask_storeu_epi16(out + r * ld + i, static_cast<__mmask16>(w >= 16 ? 0xffff : (1u << w) - 1), _mm512_cvtepi32_epi16(bits));
    }
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void quantize_rows_avx512(const float* a, int64_t lda, int64_t rows, int64_t k, int8_t* out, int64_t ld,
                                                                             float* scale, int32_t* comp) {
  const float round_magic = 12582912.0f;
  for (int64_t r = 0; r < rows; ++r) {
    const float* ar = a + r * lda;
    __m512 vmax = _mm512_setzero_ps();
    for (int64_t i = 0; i < k; i += 16) {
      const int64_t n = std::min<int64_t>(16, k - i);
      const __m512 x = _mm512_maskz_loadu_ps(n >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << n) - 1), ar + i);
      vmax = _mm512_max_ps(_mm512_abs_ps(x), vmax);  // std::max(amax, |x|)
    }
    float lanes[16];
    _mm512_storeu_ps(lanes, vmax);
    float amax = 0.0f;
    for (float v : lanes) {
      amax = std::max(amax, v);
    }
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    const __m512 vinv = _mm512_set1_ps(inv), magic = _mm512_set1_ps(round_magic);
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    __m512i sum = _mm512_setzero_si512();
    for (int64_t i = 0; i < ld; i += 16) {
      const int64_t n = std::min<int64_t>(16, k - i);
      const __mmask16 m = n >= 16 ? static_cast<__mmask16>(0xffff) : n > 0 ? static_cast<__mmask16>((1u << n) - 1) : 0;
      const __m512 x = _mm512_maskz_loadu_ps(m, ar + i);
      __m512 q = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(x, vinv), magic), magic);
      q = _mm512_min_ps(_mm512_max_ps(q, lo), hi);  // std::min(127, std::max(-127, q))
      const __m512i qi = _mm512_maskz_cvtps_epi32(m, q);
      sum = _mm512_add_epi32(sum, qi);
      const int64_t w = std::min<int64_t>(16, ld - i);
      _mm_mask_storeu_epi8(out + r * ld + i, static_cast<__mmask16>(w >= 16 ? 0xffff : (1u << w) - 1), _mm512_cvtepi32_epi8(qi));
    }
    scale[r] = amax > 0.0f ? amax / 127.0f : 1.0f;
    comp[r] = 128 * _mm512_reduce_add_epi32(sum);
  }
}

inline bool cpu_has_avx512_vnni() {
  static const bool ok = cpu_has_avx512() && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
  return ok;
}

// AVX-VNNI (the VEX-encoded, 256-bit vpdpbusd of CPUs without AVX-512: Intel's Alder Lake and later
// client cores, Sierra Forest; Zen 5 has both). Used for int8 products where AVX512-VNNI is absent
// or disabled (ELMO_FAST_DISABLE_AVX512); ELMO_FAST_DISABLE_AVX2 turns it off too.
#ifdef ELMO_FAST_HAVE_AVX_VNNI_KERNEL
inline bool cpu_has_avx_vnni() {
  static const bool ok = cpu_has_avx2_fma() && __builtin_cpu_supports("avxvnni");
  return ok;
}

// c[0:R, 0:16] of one panel of uint8 quads, 256-bit: each 64-byte panel row is two halves of 8
// columns. The same integer sums as lowp_kernel_avx512 and u8_kernel_generic, the same epilogue.
template <int R>
__attribute__((target("avx2,avxvnni"))) void u8_kernel_avx_vnni(const int8_t* a, int64_t lda, const uint8_t* panel, int64_t quads,
                                                               const float* row_scale, const int32_t* row_comp, const float* scale, float* c,
                                                               int64_t ldc) {
  __m256i acc[R][2];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    acc[r][0] = _mm256_setzero_si256();
    acc[r][1] = _mm256_setzero_si256();
  }
  for (int64_t p = 0; p < quads; ++p) {
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + p * 4 * kPanel));
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + p * 4 * kPanel + 32));
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      int32_t group;
      std::memcpy(&group, a + r * lda + 4 * p, sizeof(group));
      const __m256i av = _mm256_set1_epi32(group);
      acc[r][0] = _mm256_dpbusd_avx_epi32(acc[r][0], b0, av);
      acc[r][1] = _mm256_dpbusd_avx_epi32(acc[r][1], b1, av);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    for (int h = 0; h < 2; ++h) {
      const __m256 v = _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[r][h], _mm256_set1_epi32(row_comp[r])));
      const __m256 s = _mm256_mul_ps(_mm256_set1_ps(row_scale[r]), _mm256_loadu_ps(scale + 8 * h));
      _mm256_storeu_ps(c + r * ldc + 8 * h, _mm256_mul_ps(v, s));
    }
  }
}
#else
inline bool cpu_has_avx_vnni() {
  return false;
}
#endif
#else
inline bool cpu_has_avx512_bf16() {
  return false;
}

inline bool cpu_has_avx512_vnni() {
  return false;
}

inline bool cpu_has_avx_vnni() {
  return false;
}
#endif

inline void round_rows_bf16(const float* a, int64_t lda, int64_t rows, int64_t k, uint16_t* out, int64_t ld) {
#ifdef ELMO_FAST_HAVE_LOWP_KERNEL
  if (cpu_has_avx512_bw_vl()) {
    round_rows_bf16_avx512(a, lda, rows, k, out, ld);
    return;
  }
#endif
  round_rows_bf16_generic(a, lda, rows, k, out, ld);
}

inline void quantize_rows(const float* a, int64_t lda, int64_t rows, int64_t k, int8_t* out, int64_t ld, float* scale, int32_t* comp) {
#ifdef ELMO_FAST_HAVE_LOWP_KERNEL
  if (cpu_has_avx512_bw_vl()) {
    quantize_rows_avx512(a, lda, rows, k, out, ld, scale, comp);
    return;
  }
#endif
  quantize_rows_generic(a, lda, rows, k, out, ld, scale, comp);
}

// Activation rows as the products of one packed operand read them: float32 as they are (group 1),
// bf16 bits (group 2) or int8 with per-row scales and compensations (group 4), `ld` elements apart.
struct Rows {
  const float* f = nullptr;
  const uint16_t* bf16 = nullptr;
  const int8_t* q = nullptr;
  const float* scale = nullptr;
  const int32_t* comp = nullptr;
  int64_t ld = 0;

  static Rows fp32(const float* a, int64_t lda) { return {a, nullptr, nullptr, nullptr, nullptr, lda}; }

  // The same rows from row r0 on.
  Rows from(int64_t r0) const {
    return {f ? f + r0 * ld : nullptr, bf16 ? bf16 + r0 * ld : nullptr, q ? q + r0 * ld : nullptr,
            scale ? scale + r0 : nullptr, comp ? comp + r0 : nullptr, ld};
  }
};

// Owns converted activation rows: convert once, then use them for every product with the same rows
// (the LSTM converts h once per step for all its 4C recurrent columns, not once per column block;
// the token encoder converts a layer's input once for all its column blocks).
class RowBuffer {
 public:
  // a[rows, k] (row stride lda) in the form products with `group`-interleaved panels read.
  // `grain` > 0: convert blocks of `grain` rows in parallel (at::parallel_for; rows are independent).
  Rows convert(const float* a, int64_t lda, int64_t rows, int64_t k, int64_t group, int64_t grain = 0) {
    if (group == 1) {
      return Rows::fp32(a, lda);
    }
    const int64_t ld = round_up(k, group);
    auto over_rows = [&](const auto& body) {
      if (grain > 0 && rows > grain) {
        at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) { body(begin, end); });
      } else {
        body(0, rows);
      }
    };
    if (group == 2) {
      bf16_.resize(rows * ld);
      over_rows([&](int64_t r0, int64_t r1) { round_rows_bf16(a + r0 * lda, lda, r1 - r0, k, bf16_.data() + r0 * ld, ld); });
      return {nullptr, bf16_.data(), nullptr, nullptr, nullptr, ld};
    }
    q_.resize(rows * ld);
    scale_.resize(rows);
    comp_.resize(rows);
    over_rows([&](int64_t r0, int64_t r1) {
      quantize_rows(a + r0 * lda, lda, r1 - r0, k, q_.data() + r0 * ld, ld, scale_.data() + r0, comp_.data() + r0);
    });
    return {nullptr, nullptr, q_.data(), scale_.data(), comp_.data(), ld};
  }

 private:
  std::vector<uint16_t> bf16_;
  std::vector<int8_t> q_;
  std::vector<float> scale_;
  std::vector<int32_t> comp_;
};

// c[rows, 16 * n_panels] = a[rows, k] @ n_panels consecutive panels of Group interleaved k: bf16
// pairs (Group 2, bf16 products) or uint8 quads with per-column scales (Group 4, int8 products).
template <int Group>
inline void lowp_gemm(const Rows& a, int64_t rows, const void* data, const float* scale, int64_t n_panels, int64_t k, float* c, int64_t ldc) {
  using W = std::conditional_t<Group == 2, uint16_t, uint8_t>;
  const W* panels = static_cast<const W*>(data);
  const int64_t ld = a.ld, stride = round_up(k, Group) * kPanel, iters = stride / (Group * kPanel);
  const bool fast = Group == 2 ? cpu_has_avx512_bf16() : cpu_has_avx512_vnni();
  const bool vnni256 = Group == 4 && !fast && cpu_has_avx_vnni();
  for_each_panel_block<2>(rows, panels, n_panels, stride * static_cast<int64_t>(sizeof(W)), iters,
                          [&](auto r_c, auto np_c, int64_t r0, int64_t j, const char* pf, int64_t every, int64_t burst) {
    constexpr int R = decltype(r_c)::value, NP = decltype(np_c)::value;
#ifdef ELMO_FAST_HAVE_LOWP_KERNEL
    if (fast) {
      if constexpr (Group == 2) {
        lowp_kernel_avx512<R, NP, 2>(a.bf16 + r0 * ld, ld, panels + j * stride, stride, iters, nullptr, nullptr, nullptr, c + r0 * ldc + j * kPanel,
                                     ldc, pf, every, burst);
      } else {
        lowp_kernel_avx512<R, NP, 4>(a.q + r0 * ld, ld, panels + j * stride, stride, iters, a.scale + r0, a.comp + r0, scale + j * kPanel,
                                     c + r0 * ldc + j * kPanel, ldc, pf, every, burst);
      }
      return;
    }
#endif
    for (int q = 0; q < NP; ++q) {
      float* cq = c + r0 * ldc + (j + q) * kPanel;
#ifdef ELMO_FAST_HAVE_AVX_VNNI_KERNEL
      if constexpr (Group == 4) {
        if (vnni256) {
          u8_kernel_avx_vnni<R>(a.q + r0 * ld, ld, panels + (j + q) * stride, iters, a.scale + r0, a.comp + r0, scale + (j + q) * kPanel, cq, ldc);
          continue;
        }
      }
#endif
      if constexpr (Group == 2) {
        bf16_kernel_generic<R>(a.bf16 + r0 * ld, ld, panels + (j + q) * stride, iters, cq, ldc);
      } else {
        u8_kernel_generic<R>(a.q + r0 * ld, ld, panels + (j + q) * stride, iters, a.scale + r0, a.comp + r0, scale + (j + q) * kPanel, cq, ldc);
      }
    }
  });
  (void)fast;
  (void)vnni256;
}

// Any packed operand (see Panels) times rows already converted for it (RowBuffer::convert with
// w.group): fp32 products for k-major panels, bf16 or int8 products for bf16 pairs and uint8 quads.
inline void packed_gemm(const Rows& a, int64_t rows, const Panels& w, int64_t n_panels, int64_t k, float* c, int64_t ldc) {
  switch (w.type) {
    case at::kBFloat16:
      if (w.group == 2) {
        lowp_gemm<2>(a, rows, w.data, nullptr, n_panels, k, c, ldc);
      } else {
        packed_gemm(a.f, a.ld, rows, static_cast<const uint16_t*>(w.data), nullptr, n_panels, k, c, ldc);
      }
      break;
    case at::kByte:
      lowp_gemm<4>(a, rows, w.data, w.scale, n_panels, k, c, ldc);
      break;
    case at::kChar:
      packed_gemm(a.f, a.ld, rows, static_cast<const int8_t*>(w.data), w.scale, n_panels, k, c, ldc);
      break;
    default:
      packed_gemm(a.f, a.ld, rows, static_cast<const float*>(w.data), nullptr, n_panels, k, c, ldc);
      break;
  }
}

// The same for float32 rows, converted here for this call.
inline void packed_gemm(const float* a, int64_t lda, int64_t rows, const Panels& w, int64_t n_panels, int64_t k, float* c, int64_t ldc) {
  thread_local RowBuffer buffer;
  packed_gemm(buffer.convert(a, lda, rows, k, w.group), rows, w, n_panels, k, c, ldc);
}

// Which micro-kernel runs each kind of product on this CPU, and why not a faster one.
inline std::vector<std::string> cpu_kernel_report() {
  std::vector<std::string> lines;
#ifdef ELMO_FAST_HAVE_AVX2_KERNEL
  const bool off512 = std::getenv("ELMO_FAST_DISABLE_AVX512") || std::getenv("ELMO_FAST_DISABLE_AVX2");
  const char* why_not_512 = off512 ? "AVX-512 kernels disabled by ELMO_FAST_DISABLE_AVX512/AVX2" : "the CPU lacks AVX-512F";
  if (cpu_has_avx512()) {
    lines.emplace_back("fp32 products: avx512 (AVX-512F fp32 FMA)");
  } else if (cpu_has_avx2_fma()) {
    lines.emplace_back(std::string("fp32 products: avx2 (") + why_not_512 + ")");
  } else {
    lines.emplace_back(std::string("fp32 products: portable (") +
                       (std::getenv("ELMO_FAST_DISABLE_AVX2") ? "disabled by ELMO_FAST_DISABLE_AVX2" : "the CPU lacks AVX2+FMA") + ")");
  }
#ifdef ELMO_FAST_HAVE_LOWP_KERNEL
  const bool has512 = cpu_has_avx512();
  lines.emplace_back(cpu_has_avx512_bf16() ? "bf16 products: avx512_bf16 (vdpbf16ps)"
                                           : std::string("bf16 products: portable (") + (has512 ? "the CPU lacks AVX512-BF16" : why_not_512) + ")");
  const std::string why_not_vnni512 = has512 ? "the CPU lacks AVX512-VNNI" : why_not_512;
  lines.emplace_back(cpu_has_avx512_vnni() ? std::string("int8 products: avx512_vnni (vpdpbusd)")
                     : cpu_has_avx_vnni()  ? "int8 products: avx_vnni (256-bit vpdpbusd; " + why_not_vnni512 + ")"
                                           : "int8 products: portable (" + why_not_vnni512 + (cpu_has_avx2_fma() ? "; the CPU lacks AVX-VNNI)" : ")"));
#else
  lines.emplace_back("bf16 products: portable (built with a compiler without AVX512-BF16 support)");
  lines.emplace_back("int8 products: portable (built with a compiler without AVX512-VNNI support)");
#endif
#else
  lines.emplace_back("fp32 products: portable (not an x86-64 GCC/Clang build)");
  lines.emplace_back("bf16 products: portable (not an x86-64 GCC/Clang build)");
  lines.emplace_back("int8 products: portable (not an x86-64 GCC/Clang build)");
#endif
  lines.emplace_back("AMX: not used (no AMX kernels in elmo_fast)");
  return lines;
}

}  // namespace elmo_fast::cpu
