// GEMM against a weight matrix pre-packed into 16-column panels: every matrix product of the cpp
// backend (LSTM and token encoder).
//
// A weight W [K, N] is stored as N/16 panels, each [K, 16] contiguous (N zero-padded to a multiple
// of 16). One pass over a panel computes a [rows, 16] block of A @ W with the whole panel streamed
// once per 6 rows. NOTE: MKL's own GEMM re-packs W on every call; for the per-step LSTM products
// ([32, 512] x [512, 16384]) that copy was 40% of the GEMM time in a profile, and for one row it
// turned into strided reads. Packing once at load removes both.
//
// Every output element is one accumulation over k in order, whatever the row grouping: a row's
// result does not depend on the other rows of the call.
//
// The AVX2+FMA micro-kernel is chosen at run time; other CPUs run the same loop in portable vectors.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "vec.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define ELMO_FAST_HAVE_AVX2_KERNEL 1
#endif

namespace elmo_fast::cpu {

constexpr int64_t kPanel = 16;
constexpr int kMaxRows = 6;

inline int64_t round_up(int64_t n, int64_t m) {
  return (n + m - 1) / m * m;
}

// w [..., K, N] (any strides) -> [..., ceil(N / 16), K, 16] float32, zero-padded columns.
inline at::Tensor pack_panels(const at::Tensor& w) {
  TORCH_CHECK(w.dim() >= 2, "pack_panels: need a matrix or a stack of matrices, got ", w.sizes());
  TORCH_CHECK(w.scalar_type() == at::kFloat, "pack_panels: weights must be float32, got ", w.scalar_type());
  const int64_t k = w.size(-2), n = w.size(-1), n_p = round_up(n, kPanel);
  at::Tensor padded = at::constant_pad_nd(w, {0, n_p - n});
  std::vector<int64_t> shape(w.sizes().begin(), w.sizes().end() - 1);
  shape.push_back(n_p / kPanel);
  shape.push_back(kPanel);
  // [..., K, N / 16, 16] -> [..., N / 16, K, 16]
  return padded.reshape(shape).transpose(-3, -2).contiguous();
}

// Shape check for a packed operand of the matrix [K, N] (leading dims `lead`).
inline void check_packed(const at::Tensor& packed, const char* name, at::IntArrayRef lead, int64_t k, int64_t n) {
  std::vector<int64_t> shape(lead.begin(), lead.end());
  shape.push_back(round_up(n, kPanel) / kPanel);
  shape.push_back(k);
  shape.push_back(kPanel);
  TORCH_CHECK(packed.scalar_type() == at::kFloat && packed.sizes() == at::IntArrayRef(shape), name, " must be pack_panels' float32 output ",
              at::IntArrayRef(shape), ", got ", packed.sizes(), " ", packed.scalar_type());
}

// c[0:R, 0:16] = a[0:R, 0:k] @ panel[0:k, 0:16], portable vectors.
template <int R>
void panel_kernel_generic(const float* a, int64_t lda, const float* panel, int64_t k, float* c, int64_t ldc) {
  vfloat acc[R][2] = {};
  for (int64_t p = 0; p < k; ++p) {
    const vfloat b0 = vload(panel + p * kPanel);
    const vfloat b1 = vload(panel + p * kPanel + kLanes);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const vfloat av = vsplat(a[r * lda + p]);
      acc[r][0] += av * b0;
      acc[r][1] += av * b1;
    }
  }
  for (int r = 0; r < R; ++r) {
    vstore(c + r * ldc, acc[r][0]);
    vstore(c + r * ldc + kLanes, acc[r][1]);
  }
}

#ifdef ELMO_FAST_HAVE_AVX2_KERNEL
template <int R>
__attribute__((target("avx2,fma"))) void panel_kernel_avx2(
    const float* a, int64_t lda, const float* panel, int64_t k, float* c, int64_t ldc, const float* prefetch, int64_t every) {
  int64_t countdown = every;
  __m256 acc[R][2];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    acc[r][0] = _mm256_setzero_ps();
    acc[r][1] = _mm256_setzero_ps();
  }
  for (int64_t p = 0; p < k; ++p) {
    const __m256 b0 = _mm256_loadu_ps(panel + p * kPanel);
    const __m256 b1 = _mm256_loadu_ps(panel + p * kPanel + 8);
    // One 64-byte row of the prefetch slice every `every` iterations.
    if (prefetch && --countdown == 0) {
      countdown = every;
      _mm_prefetch(reinterpret_cast<const char*>(prefetch), _MM_HINT_T0);
      prefetch += kPanel;
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256 av = _mm256_broadcast_ss(a + r * lda + p);
      acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_ps(c + r * ldc, acc[r][0]);
    _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);
  }
}

// ELMO_FAST_DISABLE_AVX2=1 (read once) forces the portable kernel, so tests can cover it here.
inline bool cpu_has_avx2_fma() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && !std::getenv("ELMO_FAST_DISABLE_AVX2");
  return ok;
}
#endif

// `prefetch`: rows of the next panel to bring into cache, one every `every` iterations (null: none).
template <int R>
inline void panel_kernel(const float* a, int64_t lda, const float* panel, int64_t k, float* c, int64_t ldc, const float* prefetch, int64_t every) {
#ifdef ELMO_FAST_HAVE_AVX2_KERNEL
  if (cpu_has_avx2_fma()) {
    panel_kernel_avx2<R>(a, lda, panel, k, c, ldc, prefetch, every);
    return;
  }
#endif
  panel_kernel_generic<R>(a, lda, panel, k, c, ldc);
}

// c[rows, 16 * n_panels] (row stride ldc) = a[rows, k] (row stride lda) @ n_panels consecutive panels.
// Rows go in groups of at most kMaxRows, of near-equal size (32 rows: 6,6,5,5,5,5, not 6,6,6,6,6,2).
// While a panel is in use, each row group prefetches its share of the next panel, spread evenly.
// NOTE: spreading measured 90 GFLOP/s against 82 when the first group fetched the whole next panel
// ([32, 512] x [512, 16384] streamed from memory, one core), and 23 GB/s against 19 for one row.
inline void packed_gemm(const float* a, int64_t lda, int64_t rows, const float* panels, int64_t n_panels, int64_t k, float* c, int64_t ldc) {
  const int64_t groups = (rows + kMaxRows - 1) / kMaxRows;
  for (int64_t j = 0; j < n_panels; ++j) {
    const float* panel = panels + j * k * kPanel;
    const float* next = j + 1 < n_panels ? panel + k * kPanel : nullptr;
    int64_t r0 = 0;
    for (int64_t gi = 0; gi < groups; ++gi) {
      const int64_t n = (rows - r0) / (groups - gi) + ((rows - r0) % (groups - gi) != 0);
      const float* ar = a + r0 * lda;
      float* cr = c + r0 * ldc + j * kPanel;
      const int64_t lo = gi * k / groups, hi = (gi + 1) * k / groups;
      const float* pf = next && hi > lo ? next + lo * kPanel : nullptr;
      const int64_t every = hi > lo ? k / (hi - lo) : 1;
      switch (n) {
        case 6: panel_kernel<6>(ar, lda, panel, k, cr, ldc, pf, every); break;
        case 5: panel_kernel<5>(ar, lda, panel, k, cr, ldc, pf, every); break;
        case 4: panel_kernel<4>(ar, lda, panel, k, cr, ldc, pf, every); break;
        case 3: panel_kernel<3>(ar, lda, panel, k, cr, ldc, pf, every); break;
        case 2: panel_kernel<2>(ar, lda, panel, k, cr, ldc, pf, every); break;
        default: panel_kernel<1>(ar, lda, panel, k, cr, ldc, pf, every); break;
      }
      r0 += n;
    }
  }
}

}  // namespace elmo_fast::cpu
