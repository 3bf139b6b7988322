// GEMM against a weight matrix pre-packed into 16-column panels: every matrix product of the cpp
// backend (LSTM and token encoder).
//
// A weight W [K, N] is stored as N/16 panels, each [K, 16] contiguous (N zero-padded to a multiple
// of 16). One pass over a panel computes a [rows, 16] block of A @ W with the whole panel streamed
// once per 6 rows. NOTE: MKL's own GEMM re-packs W on every call; for the per-step LSTM products
// ([32, 512] x [512, 16384]) that copy was 40% of the GEMM time in a profile, and for one row it
// turned into strided reads. Packing once at load removes both.
//
// Every output element is one accumulation over k in a fixed order (blocks of kDepthBlock, each
// summed from zero, then added in order), whatever the row grouping: a row's result does not depend
// on the other rows of the call.
//
// Panels hold float32, or for reduced-precision weight storage bf16 (converted exactly to float32 as
// they are loaded) or int8 with one float32 scale per column (applied to the finished sums). The
// products always accumulate in float32.
//
// The micro-kernel is chosen at run time: AVX-512 where the CPU has it, else AVX2+FMA (bit-identical
// results: the same fp32 FMAs in the same order), else the same loop in portable vectors.
// NOTE: on the 2-core Xeon (Sapphire Rapids class) of 2026-12-01, one [2, 32, 22, 512] layer of the
// original model took 635 ms with the AVX2 kernel and 473 ms with the AVX-512 one (84 -> 112 GFLOP/s);
// a later, noisier rerun: 812 -> 633 ms median (benchmarks/layer_kernels.py; results/layer-kernels_*).
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <type_traits>
#include <vector>

#include "vec.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define ELMO_FAST_HAVE_AVX2_KERNEL 1
#endif

namespace elmo_fast::cpu {

constexpr int64_t kPanel = 16;
constexpr int kMaxRows = 6;
// Depth of one partial sum: every kernel sums k in blocks of kDepthBlock terms, each block from zero
// in registers, and adds the block sums in order. NOTE: one running sum over k = 4096 (the original
// model's projection) had 3x the root-mean-square error against float64 of torch's matmul (whose
// GEMM also sums in blocks); with blocks of 128 it is below torch's (benchmarks/accuracy.py --wide,
// results/accuracy_*.json). The result of a row still does not depend on the other rows.
constexpr int64_t kDepthBlock = 128;

inline int64_t round_up(int64_t n, int64_t m) {
  return (n + m - 1) / m * m;
}

inline bool panel_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kBFloat16 || t == at::kChar;
}

// How many consecutive k a panel row interleaves: 1 for k-major panels of any dtype, 2 for bf16
// pairs (the layout vdpbf16ps reads: [..., N / 16, ceil(K / 2), 16, 2]), 4 for uint8 quads (the
// layout vpdpbusd reads: [..., N / 16, ceil(K / 4), 16, 4]). See lowp_gemm.h.
inline int64_t k_group(const at::Tensor& packed, size_t lead_dims) {
  if (packed.dim() == static_cast<int64_t>(lead_dims) + 4) {
    if (packed.scalar_type() == at::kBFloat16 && packed.size(-1) == 2) {
      return 2;
    }
    if (packed.scalar_type() == at::kByte && packed.size(-1) == 4) {
      return 4;
    }
  }
  return 1;
}

// w [..., K, N] (any strides) -> [..., ceil(N / 16), K, 16] of w's dtype, zero-padded columns.
inline at::Tensor pack_panels(const at::Tensor& w) {
  TORCH_CHECK(w.dim() >= 2, "pack_panels: need a matrix or a stack of matrices, got ", w.sizes());
  TORCH_CHECK(panel_dtype(w.scalar_type()), "pack_panels: weights must be float32, bfloat16 or int8, got ", w.scalar_type());
  const int64_t n = w.size(-1), n_p = round_up(n, kPanel);
  at::Tensor padded = at::constant_pad_nd(w, {0, n_p - n});
  std::vector<int64_t> shape(w.sizes().begin(), w.sizes().end() - 1);
  shape.push_back(n_p / kPanel);
  shape.push_back(kPanel);
  // [..., K, N / 16, 16] -> [..., N / 16, K, 16]
  return padded.reshape(shape).transpose(-3, -2).contiguous();
}

// Shape check for a packed operand of the matrix [K, N] (leading dims `lead`), and for its scales:
// int8 and uint8 panels need them ([..., round_up(N, 16)] float32), the other dtypes take none.
inline void check_packed(const at::Tensor& packed, const std::optional<at::Tensor>& scale, const char* name, at::IntArrayRef lead, int64_t k, int64_t n) {
  const int64_t group = k_group(packed, lead.size());
  std::vector<int64_t> shape(lead.begin(), lead.end());
  shape.push_back(round_up(n, kPanel) / kPanel);
  shape.push_back(round_up(k, group) / group);
  shape.push_back(kPanel);
  if (group > 1) {
    shape.push_back(group);
  }
  TORCH_CHECK((group > 1 || panel_dtype(packed.scalar_type())) && packed.sizes() == at::IntArrayRef(shape), name, " must be pack_panels' output ",
              at::IntArrayRef(shape), " (float32, bfloat16 or int8; or bfloat16 pairs or uint8 quads, see lowp_gemm.h), got ",
              packed.sizes(), " ", packed.scalar_type());
  const bool int8 = packed.scalar_type() == at::kChar || packed.scalar_type() == at::kByte;
  if (!int8) {
    TORCH_CHECK(!scale.has_value(), name, ": scales go only with int8 panels, got ", packed.scalar_type(), " panels");
    return;
  }
  std::vector<int64_t> scale_shape(lead.begin(), lead.end());
  scale_shape.push_back(round_up(n, kPanel));
  TORCH_CHECK(scale.has_value(), name, ": int8 panels need their per-column scales ", at::IntArrayRef(scale_shape));
  TORCH_CHECK(scale->scalar_type() == at::kFloat && scale->sizes() == at::IntArrayRef(scale_shape) && scale->is_contiguous(), name,
              " scales must be contiguous float32 ", at::IntArrayRef(scale_shape), ", got ", scale->sizes(), " ", scale->scalar_type());
}

// One packed operand as the kernels read it: panels of float, bf16 (raw uint16 bits), int8 or uint8,
// `group` consecutive k per panel row (k_group), and for int8 / uint8 the scale of every (padded) column.
struct Panels {
  const void* data = nullptr;
  at::ScalarType type = at::kFloat;
  const float* scale = nullptr;
  int64_t group = 1;

  static Panels of(const at::Tensor& packed, const std::optional<at::Tensor>& scale, size_t lead_dims) {
    return {packed.data_ptr(), packed.scalar_type(), scale ? scale->data_ptr<float>() : nullptr, k_group(packed, lead_dims)};
  }

  // Elements of one panel of depth k.
  int64_t panel_elems(int64_t k) const { return round_up(k, group) * kPanel; }

  // The operand from its panel `index` on, for panels of depth k.
  Panels panel(int64_t index, int64_t k) const {
    const int64_t bytes = index * panel_elems(k) * static_cast<int64_t>(at::elementSize(type));
    return {static_cast<const char*>(data) + bytes, type, scale ? scale + index * kPanel : nullptr, group};
  }
};

// Panel element types: float32, bf16 as its raw bits, int8.
ELMO_FAST_INLINE float to_float(float w) {
  return w;
}

ELMO_FAST_INLINE float to_float(uint16_t w) {
  const uint32_t bits = static_cast<uint32_t>(w) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

ELMO_FAST_INLINE float to_float(int8_t w) {
  return static_cast<float>(w);
}

// c[0:R, 0:16] = a[0:R, 0:k] @ panel[0:k, 0:16] (times scale[0:16] when given), portable vectors.
template <int R, typename W>
void panel_kernel_generic(const float* a, int64_t lda, const W* panel, const float* scale, int64_t k, float* c, int64_t ldc) {
  vfloat acc[R][2] = {};
  float row[kPanel];
  for (int64_t p0 = 0; p0 < k; p0 += kDepthBlock) {
    vfloat blk[R][2] = {};
    for (int64_t p = p0; p < std::min(k, p0 + kDepthBlock); ++p) {
      for (int64_t q = 0; q < kPanel; ++q) {
        row[q] = to_float(panel[p * kPanel + q]);
      }
      const vfloat b0 = vload(row);
      const vfloat b1 = vload(row + kLanes);
#pragma GCC unroll 6
      for (int r = 0; r < R; ++r) {
        const vfloat av = vsplat(a[r * lda + p]);
        blk[r][0] += av * b0;
        blk[r][1] += av * b1;
      }
    }
    for (int r = 0; r < R; ++r) {
      acc[r][0] += blk[r][0];
      acc[r][1] += blk[r][1];
    }
  }
  for (int r = 0; r < R; ++r) {
    if (scale) {
      acc[r][0] *= vload(scale);
      acc[r][1] *= vload(scale + kLanes);
    }
    vstore(c + r * ldc, acc[r][0]);
    vstore(c + r * ldc + kLanes, acc[r][1]);
  }
}

#ifdef ELMO_FAST_HAVE_AVX2_KERNEL
#define ELMO_FAST_AVX2 __attribute__((target("avx2,fma")))

// One iteration's share of the software prefetch: `burst` 64-byte lines every `every` iterations.
ELMO_FAST_INLINE void prefetch_tick(const char*& prefetch, int64_t& countdown, int64_t every, int64_t burst) {
  if (prefetch && --countdown == 0) {
    countdown = every;
    for (int64_t i = 0; i < burst; ++i) {
      _mm_prefetch(prefetch, _MM_HINT_T0);
      prefetch += 64;
    }
  }
}

// One panel row (16 weights) as two float vectors.
ELMO_FAST_AVX2 inline void load_row(const float* p, __m256& b0, __m256& b1) {
  b0 = _mm256_loadu_ps(p);
  b1 = _mm256_loadu_ps(p + 8);
}

// bf16 -> float32 is exact: the 16 bits become the high half of the float.
ELMO_FAST_AVX2 inline void load_row(const uint16_t* p, __m256& b0, __m256& b1) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  b0 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(v)), 16));
  b1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(v, 1)), 16));
}

ELMO_FAST_AVX2 inline void load_row(const int8_t* p, __m256& b0, __m256& b1) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  b0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
  b1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v, 8)));
}

// NP consecutive panels at once (`stride` elements apart) for R rows: with one or two rows a single
// panel leaves only 2 or 4 independent FMA chains, and the 4-cycle FMA latency, not memory, set the
// pace. Each output column is still one accumulation over k in order, so the result of a row does
// not depend on NP. `prefetch`: `burst` 64-byte lines every `every` iterations (null: none).
template <int R, int NP, typename W>
ELMO_FAST_AVX2 void panel_kernel_avx2(
    const float* a, int64_t lda, const W* panel, int64_t stride, const float* scale, int64_t k, float* c, int64_t ldc,
    const char* prefetch, int64_t every, int64_t burst) {
  int64_t countdown = every;
  __m256 acc[R][NP][2];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int q = 0; q < NP; ++q) {
      acc[r][q][0] = _mm256_setzero_ps();
      acc[r][q][1] = _mm256_setzero_ps();
    }
  }
  for (int64_t p0 = 0; p0 < k; p0 += kDepthBlock) {
    __m256 blk[R][NP][2];
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
      for (int q = 0; q < NP; ++q) {
        blk[r][q][0] = _mm256_setzero_ps();
        blk[r][q][1] = _mm256_setzero_ps();
      }
    }
    for (int64_t p = p0; p < std::min(k, p0 + kDepthBlock); ++p) {
      prefetch_tick(prefetch, countdown, every, burst);
#pragma GCC unroll 4
      for (int q = 0; q < NP; ++q) {
        __m256 b0, b1;
        load_row(panel + q * stride + p * kPanel, b0, b1);
#pragma GCC unroll 6
        for (int r = 0; r < R; ++r) {
          const __m256 av = _mm256_broadcast_ss(a + r * lda + p);
          blk[r][q][0] = _mm256_fmadd_ps(av, b0, blk[r][q][0]);
          blk[r][q][1] = _mm256_fmadd_ps(av, b1, blk[r][q][1]);
        }
      }
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
      for (int q = 0; q < NP; ++q) {
        acc[r][q][0] = _mm256_add_ps(acc[r][q][0], blk[r][q][0]);
        acc[r][q][1] = _mm256_add_ps(acc[r][q][1], blk[r][q][1]);
      }
    }
  }
#pragma GCC unroll 4
  for (int q = 0; q < NP; ++q) {
    __m256 s0 = _mm256_set1_ps(1.0f), s1 = s0;
    if (scale) {
      s0 = _mm256_loadu_ps(scale + q * kPanel);
      s1 = _mm256_loadu_ps(scale + q * kPanel + 8);
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      if (scale) {
        acc[r][q][0] = _mm256_mul_ps(acc[r][q][0], s0);
        acc[r][q][1] = _mm256_mul_ps(acc[r][q][1], s1);
      }
      _mm256_storeu_ps(c + r * ldc + q * kPanel, acc[r][q][0]);
      _mm256_storeu_ps(c + r * ldc + q * kPanel + 8, acc[r][q][1]);
    }
  }
}

// ELMO_FAST_DISABLE_AVX2=1 (read once) forces the portable kernel, so tests can cover it here.
inline bool cpu_has_avx2_fma() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && !std::getenv("ELMO_FAST_DISABLE_AVX2");
  return ok;
}

#define ELMO_FAST_AVX512 __attribute__((target("avx512f,fma")))

// One panel row (16 weights) as one 16-lane float vector.
ELMO_FAST_AVX512 inline __m512 load_row512(const float* p) {
  return _mm512_loadu_ps(p);
}

ELMO_FAST_AVX512 inline __m512 load_row512(const uint16_t* p) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
}

ELMO_FAST_AVX512 inline __m512 load_row512(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

// The AVX-512 twin of panel_kernel_avx2: a panel row is one register. Every FMA is the same
// single-rounding fp32 FMA in the same order, so the results are bit-identical to the AVX2 kernel's.
template <int R, int NP, typename W>
ELMO_FAST_AVX512 void panel_kernel_avx512(
    const float* a, int64_t lda, const W* panel, int64_t stride, const float* scale, int64_t k, float* c, int64_t ldc,
    const char* prefetch, int64_t every, int64_t burst) {
  int64_t countdown = every;
  __m512 acc[R][NP];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int q = 0; q < NP; ++q) {
      acc[r][q] = _mm512_setzero_ps();
    }
  }
  for (int64_t p0 = 0; p0 < k; p0 += kDepthBlock) {
    __m512 blk[R][NP];
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
      for (int q = 0; q < NP; ++q) {
        blk[r][q] = _mm512_setzero_ps();
      }
    }
    for (int64_t p = p0; p < std::min(k, p0 + kDepthBlock); ++p) {
      prefetch_tick(prefetch, countdown, every, burst);
      __m512 b[NP];
#pragma GCC unroll 4
      for (int q = 0; q < NP; ++q) {
        b[q] = load_row512(panel + q * stride + p * kPanel);
      }
#pragma GCC unroll 6
      for (int r = 0; r < R; ++r) {
        const __m512 av = _mm512_set1_ps(a[r * lda + p]);
#pragma GCC unroll 4
        for (int q = 0; q < NP; ++q) {
          blk[r][q] = _mm512_fmadd_ps(av, b[q], blk[r][q]);
        }
      }
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
      for (int q = 0; q < NP; ++q) {
        acc[r][q] = _mm512_add_ps(acc[r][q], blk[r][q]);
      }
    }
  }
#pragma GCC unroll 4
  for (int q = 0; q < NP; ++q) {
    const __m512 s = scale ? _mm512_loadu_ps(scale + q * kPanel) : _mm512_set1_ps(1.0f);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      _mm512_storeu_ps(c + r * ldc + q * kPanel, scale ? _mm512_mul_ps(acc[r][q], s) : acc[r][q]);
    }
  }
}

// ELMO_FAST_DISABLE_AVX512=1 (read once) keeps AVX2-only machines' kernel, so tests can compare both.
inline bool cpu_has_avx512() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma") && !std::getenv("ELMO_FAST_DISABLE_AVX512") &&
                         !std::getenv("ELMO_FAST_DISABLE_AVX2");
  return ok;
}
#endif

template <int R, int NP, typename W>
inline void panel_kernel(
    const float* a, int64_t lda, const W* panel, int64_t stride, const float* scale, int64_t k, float* c, int64_t ldc,
    const char* prefetch, int64_t every, int64_t burst) {
#ifdef ELMO_FAST_HAVE_AVX2_KERNEL
  if (cpu_has_avx512()) {
    panel_kernel_avx512<R, NP>(a, lda, panel, stride, scale, k, c, ldc, prefetch, every, burst);
    return;
  }
  if (cpu_has_avx2_fma()) {
    panel_kernel_avx2<R, NP>(a, lda, panel, stride, scale, k, c, ldc, prefetch, every, burst);
    return;
  }
#endif
  for (int q = 0; q < NP; ++q) {
    panel_kernel_generic<R>(a, lda, panel + q * stride, scale ? scale + q * kPanel : nullptr, k, c + q * kPanel, ldc);
  }
}

// Panels computed together for a call of `rows` rows (one row group): 4 for one row, 2 for two,
// else `wide`.
inline int64_t panels_at_once(int64_t rows, int64_t wide = 1) {
  return rows == 1 ? 4 : rows == 2 ? 2 : wide;
}

template <int N>
using Int = std::integral_constant<int, N>;

// The loop every panel GEMM shares: over blocks of panels and, inside, over row groups; calls
// kernel(Int<R>, Int<NP>, r0, j, prefetch, every, burst) for rows [r0, r0 + R) and panels
// [j, j + NP), where one panel is `panel_bytes` long and the kernel's loop runs `iters` times.
// Rows go in groups of at most kMaxRows, of near-equal size (32 rows: 6,6,5,5,5,5, not 6,6,6,6,6,2);
// one or two rows take several panels per pass, larger groups `Wide` (panels_at_once).
// While a block of panels is in use, each row group prefetches its share of the next block, spread
// evenly over the pass.
// NOTE: spreading measured 90 GFLOP/s against 82 when the first group fetched the whole next panel
// ([32, 512] x [512, 16384] streamed from memory, one core), and 23 GB/s against 19 for one row.
template <int Wide, typename Kernel>
inline void for_each_panel_block(int64_t rows, const void* panels, int64_t n_panels, int64_t panel_bytes, int64_t iters, const Kernel& kernel) {
  const int64_t groups = (rows + kMaxRows - 1) / kMaxRows;
  const int64_t at_once = panels_at_once(rows, Wide);
  const int64_t lines = (panel_bytes + 63) / 64;
  for (int64_t j = 0; j < n_panels;) {
    const int64_t np = j + at_once <= n_panels ? at_once : 1;
    const int64_t ahead = std::min(np, n_panels - j - np);
    const char* next = ahead > 0 ? static_cast<const char*>(panels) + (j + np) * panel_bytes : nullptr;
    int64_t r0 = 0;
    for (int64_t gi = 0; gi < groups; ++gi) {
      const int64_t n = (rows - r0) / (groups - gi) + ((rows - r0) % (groups - gi) != 0);
      const int64_t lo = gi * ahead * lines / groups, hi = (gi + 1) * ahead * lines / groups;
      const char* pf = next && hi > lo ? next + lo * 64 : nullptr;
      const int64_t burst = hi > lo ? (hi - lo + iters - 1) / iters : 1;
      const int64_t every = hi > lo ? std::max<int64_t>(1, iters * burst / (hi - lo)) : 1;
      auto run = [&](auto np_c) {
        switch (n) {
          case 6: kernel(Int<6>{}, np_c, r0, j, pf, every, burst); break;
          case 5: kernel(Int<5>{}, np_c, r0, j, pf, every, burst); break;
          case 4: kernel(Int<4>{}, np_c, r0, j, pf, every, burst); break;
          case 3: kernel(Int<3>{}, np_c, r0, j, pf, every, burst); break;
          case 2: kernel(Int<2>{}, np_c, r0, j, pf, every, burst); break;
          default: kernel(Int<1>{}, np_c, r0, j, pf, every, burst); break;
        }
      };
      if (np == 4) {
        kernel(Int<1>{}, Int<4>{}, r0, j, pf, every, burst);
      } else if (np == 2 && rows == 2) {
        kernel(Int<2>{}, Int<2>{}, r0, j, pf, every, burst);
      } else if constexpr (Wide == 2) {
        if (np == 2) {
          run(Int<2>{});
        } else {
          run(Int<1>{});
        }
      } else {
        run(Int<1>{});
      }
      r0 += n;
    }
    j += np;
  }
}

// c[rows, 16 * n_panels] (row stride ldc) = a[rows, k] (row stride lda) @ n_panels consecutive panels
// (int8: times each column's scale, `scale` pointing at the first panel's).
template <typename W>
inline void packed_gemm(const float* a, int64_t lda, int64_t rows, const W* panels, const float* scale, int64_t n_panels, int64_t k, float* c, int64_t ldc) {
  const int64_t stride = k * kPanel;
  for_each_panel_block<1>(rows, panels, n_panels, stride * static_cast<int64_t>(sizeof(W)), k,
                          [&](auto r_c, auto np_c, int64_t r0, int64_t j, const char* pf, int64_t every, int64_t burst) {
                            panel_kernel<decltype(r_c)::value, decltype(np_c)::value>(
                                a + r0 * lda, lda, panels + j * stride, stride, scale ? scale + j * kPanel : nullptr, k, c + r0 * ldc + j * kPanel, ldc, pf, every, burst);
                          });
}

// float32 panels (the char-CNN's filters).
inline void packed_gemm(const float* a, int64_t lda, int64_t rows, const float* panels, int64_t n_panels, int64_t k, float* c, int64_t ldc) {
  packed_gemm<float>(a, lda, rows, panels, nullptr, n_panels, k, c, ldc);
}

}  // namespace elmo_fast::cpu
