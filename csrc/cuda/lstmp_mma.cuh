// Warp-level tensor-core and copy primitives (sm_80+) used by the persistent kernel: cp.async,
// ldmatrix, mma.sync m16n8k16 bf16 with float32 accumulation, and the float2 reduction.
//
// Fragment layout of mma.m16n8k16 (g = lane / 4, q = lane % 4), each register two bf16 (low = lower k):
//   A (16 x 16, row major): a[0] = (row g, k 2q..2q+1), a[1] = (row g+8, same k),
//                           a[2] = (row g, k 2q+8..2q+9), a[3] = (row g+8, k 2q+8..2q+9)
//   B (16 x 8, k major):    b[0] = (k 2q..2q+1, col g), b[1] = (k 2q+8..2q+9, col g)
//   C (16 x 8, float32):    c[0], c[1] = (row g, cols 2q, 2q+1), c[2], c[3] = (row g+8, same cols)
// ldmatrix loads 8 x 8 b16 matrices whose 8 rows (16 bytes each) are addressed by lanes 8i..8i+7 for
// matrix i; lane l receives (row l/4, cols 2(l%4)..+1) of each, or of its transpose with .trans.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace elmo_fast {

__device__ __forceinline__ uint32_t smem_addr(const void *p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async_16(void *smem_dst, const void *gmem_src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(smem_dst)), "l"(gmem_src) : "memory");
}

__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(smem_addr(row))
                 : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(row))
                 : "memory");
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(row))
                 : "memory");
}

// d += a @ b
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// *addr += v0, *(addr + 1) += v1 at device scope; addr is 8-byte aligned.
__device__ __forceinline__ void atomic_add2(float *addr, float v0, float v1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    atomicAdd(reinterpret_cast<float2 *>(addr), make_float2(v0, v1));
#else
    atomicAdd(addr, v0);
    atomicAdd(addr + 1, v1);
#endif
}

// Element offset of 16-byte chunk `chunk` of row `row` in a [rows][ld] bf16 tile whose chunks are
// XOR-swizzled by row: the 8 rows an ldmatrix reads at the same logical chunk hit 8 different bank
// groups. Needs ld % 64 == 0.
__device__ __forceinline__ int swizzle(int row, int chunk, int ld) { return row * ld + ((chunk ^ (row & 7)) << 3); }

}  // namespace elmo_fast
