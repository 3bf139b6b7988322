// Single-threaded row-major GEMM on raw pointers, for use inside at::parallel_for.
//
// NOTE: one multi-threaded GEMM per operand measured 2x slower here than splitting the output
// columns into blocks and giving each thread its own single-threaded GEMMs (2-core AMD EPYC, MKL:
// [32, 512] x [512, 16384] took 10 ms as one GEMM on 2 threads, 4.3 ms as 512-column blocks);
// the blocks also let the caller fuse its epilogue while the tile is still in cache.
#pragma once

#include <ATen/ATen.h>
#include <ATen/ops/mm_cpu_dispatch.h>

namespace elmo_fast::cpu {

// c[m, n] = a[m, k] @ b[k, n]; a and b may be column slices (lda >= k, ldb >= n), c is dense.
// ATen's CPU kernel calls the BLAS it was built with; inside a parallel region it stays on this thread.
inline void gemm(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t m, int64_t n, int64_t k) {
  if (m == 0 || n == 0) {
    return;
  }
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  at::Tensor ta = at::from_blob(const_cast<float*>(a), {m, k}, {lda, 1}, opts);
  at::Tensor tb = at::from_blob(const_cast<float*>(b), {k, n}, {ldb, 1}, opts);
  at::Tensor tc = at::from_blob(c, {m, n}, {n, 1}, opts);
  at::cpu::mm_out(tc, ta, tb);
}

}  // namespace elmo_fast::cpu
