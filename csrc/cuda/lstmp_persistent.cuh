// Persistent LSTM with projection, the kernel (bf16 weights, float32 state): one cooperative launch
// runs every time step of a layer, with the weights read from HBM once and kept in shared memory.
//
// Each block owns kCells cells of one direction: their rows of all four gates of w_hh (P x 4 kCells)
// and of w_proj (kCells x P) stay in shared memory for the whole sequence, the float32 cell state in
// shared memory next to them. Per step s each block
//   1. stages h_{s-1} for a chunk of rows: h0 at s = 0, else the previous step's reduced projection,
//      clipped here (readers apply the projection clip);
//   2. computes its gates on the tensor cores (mma.sync m16n8k16), adds the input gates
//      gx = x @ w_ih + bias, updates its cells (clipped, float32) and forms a = sigmoid(o) * tanh(c);
//   3. multiplies a by its rows of w_proj (a partial projection over its cells) and adds the partial
//      into h_acc[(s + 1) % 3] with float32 atomics;
// then one grid-wide barrier separates the steps. At step s the block also writes its share of the
// outputs of step s - 1 (out with the residual, h_n) and zeroes its share of h_acc[(s + 2) % 3],
// which nobody reads or adds to during step s; three buffers make one barrier per step enough.
// Rows are independent, so batches larger than shared memory allows run as several launches; the
// directions run in one launch when both fit on chip (small models), else one after the other.
// NOTE: the float32 atomics make the summation order over blocks vary from run to run (results
// differ in the last bits between runs; bf16 outputs almost never do).
// NOTE (design numbers, not measured): the original model (P = 512, C = 4096) takes 128 blocks of
// 32 cells per direction: 128 KiB of w_hh + 32 KiB of w_proj + ~36 KiB of staging per block, plus
// 128 bytes of cell state per row, so an H100 (227 KiB per block, 132 SMs) runs up to ~230 rows
// per launch, one direction at a time. Only 4 of the 8 warps compute gates then (one 8-cell pair
// each); the per-step work at batch 1 is bounded by shared-memory reads of the weights (~1000 cycles)
// and the grid barrier. The partial-projection atomics grow with the batch (blocks x B x P per step)
// and dominate beyond a few dozen rows.
#pragma once

#include <cstdint>

#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "lstmp_common.cuh"
#include "lstmp_mma.cuh"
#include "lstmp_params.h"

namespace elmo_fast {

namespace cg = cooperative_groups;

template <int kNThreads_, int kChunkRows_, int kCells_>
struct LstmpPersistentTraits {
    using elem_t = __nv_bfloat16;
    static constexpr int kNThreads = kNThreads_;
    static constexpr int kNWarps = kNThreads / 32;
    // batch rows per pass over the weights: the N side of the gate products, M of the projection
    static constexpr int kChunkRows = kChunkRows_;
    static constexpr int kMaxNTiles = kChunkRows / 8;
    static constexpr int kMaxMTiles = kChunkRows / 16;
    // cells per block; the gate rows are ordered so that one mma tile pair holds i, j, f, o of 8 cells
    static constexpr int kCells = kCells_;
    static constexpr int kGatePairs = kCells / 8;
    static constexpr int kProjKTiles = kCells / 16;
    // loads in flight per thread while staging h
    static constexpr int kStageUnroll = 4;
    static_assert(kChunkRows % 16 == 0 && kCells % 16 == 0 && kGatePairs <= kNWarps, "tile shape");
};

// Byte offsets into dynamic shared memory, and row pitches in elements.
struct PersistentSmemLayout {
    size_t w_hh, w_proj, h, a, c, len, total;
    int ld_h, ld_a, ld_c;
};

__host__ __device__ inline size_t align16(size_t n) { return (n + 15) / 16 * 16; }

__host__ __device__ inline PersistentSmemLayout persistent_smem_layout(int cells, int proj, int rows, int chunk_rows) {
    PersistentSmemLayout layout;
    // +8 elements: consecutive rows start 16 bytes apart modulo 128, so ldmatrix reads are conflict-free
    layout.ld_h = proj + 8;
    layout.ld_a = cells + 8;
    // == 8 (mod 32): the lanes of a warp that update cells read different banks
    layout.ld_c = (rows + 23) / 32 * 32 + 8;
    size_t offset = 0;
    layout.w_hh = offset;
    offset = align16(offset + sizeof(__nv_bfloat16) * proj * 4 * cells);
    layout.w_proj = offset;
    offset = align16(offset + sizeof(__nv_bfloat16) * cells * proj);
    layout.h = offset;
    offset = align16(offset + sizeof(__nv_bfloat16) * chunk_rows * layout.ld_h);
    layout.a = offset;
    offset = align16(offset + sizeof(__nv_bfloat16) * chunk_rows * layout.ld_a);
    layout.c = offset;
    offset = align16(offset + sizeof(float) * cells * layout.ld_c);
    layout.len = offset;
    offset = align16(offset + sizeof(int) * (rows + 1));
    layout.total = offset;
    return layout;
}

// Grid: dirs x (C / kCells) blocks, all co-resident (cooperative launch). h_acc: [dirs][3][B][P] float32,
// buffer 1 zeroed before the launch.
template <typename Ktraits>
__global__ void __launch_bounds__(Ktraits::kNThreads, 1)
lstmp_persistent_fwd_kernel(const LstmpParams params, float *__restrict__ h_acc) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();
#else
    using elem_t = typename Ktraits::elem_t;
    constexpr int kNThreads = Ktraits::kNThreads;
    constexpr int kNWarps = Ktraits::kNWarps;
    constexpr int kChunkRows = Ktraits::kChunkRows;
    constexpr int kMaxNTiles = Ktraits::kMaxNTiles;
    constexpr int kMaxMTiles = Ktraits::kMaxMTiles;
    constexpr int kCells = Ktraits::kCells;
    constexpr int kGates = 4 * kCells;
    constexpr int kStageUnroll = Ktraits::kStageUnroll;
    cg::grid_group grid = cg::this_grid();

    const int C = params.cell_dim, P = params.proj_dim, R = params.batch, T = params.width;
    const int blocks_per_dir = C / kCells;
    const int i_d = blockIdx.x / blocks_per_dir;
    const int i_blk = blockIdx.x % blocks_per_dir;
    const int c_lo = i_blk * kCells;
    // this block's share of the output columns and of the buffer to zero
    const int p_lo = int(int64_t(P) * i_blk / blocks_per_dir), p_hi = int(int64_t(P) * (i_blk + 1) / blocks_per_dir);
    const int np = p_hi - p_lo;
    const int64_t z_lo = int64_t(R) * P * i_blk / blocks_per_dir, z_hi = int64_t(R) * P * (i_blk + 1) / blocks_per_dir;
    const bool reverse = params.first_dir + i_d == 1;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int i_g = lane / 4, i_q = lane % 4;

    extern __shared__ __align__(16) unsigned char smem[];
    const PersistentSmemLayout layout = persistent_smem_layout(kCells, P, R, kChunkRows);
    // [P][4 kCells] swizzled; column m = 32 (cell / 8) + 8 gate + cell % 8
    elem_t *s_whh = reinterpret_cast<elem_t *>(smem + layout.w_hh);
    // [kCells][P] swizzled
    elem_t *s_wp = reinterpret_cast<elem_t *>(smem + layout.w_proj);
    // [kChunkRows][ld_h]: h of the chunk's rows
    elem_t *s_h = reinterpret_cast<elem_t *>(smem + layout.h);
    // [kChunkRows][ld_a]: a of the chunk's rows
    elem_t *s_a = reinterpret_cast<elem_t *>(smem + layout.a);
    // [kCells][ld_c]: the cell state of every row
    float *s_c = reinterpret_cast<float *>(smem + layout.c);
    // [R] clamped lengths, then the number of steps
    int *s_len = reinterpret_cast<int *>(smem + layout.len);
    const int ld_h = layout.ld_h, ld_a = layout.ld_a, ld_c = layout.ld_c;

    const elem_t *w_hh = reinterpret_cast<const elem_t *>(params.w_hh_ptr) + int64_t(i_d) * P * 4 * C;
    const elem_t *w_proj = reinterpret_cast<const elem_t *>(params.w_proj_ptr) + int64_t(i_d) * C * P;
    const elem_t *gx = reinterpret_cast<const elem_t *>(params.gx_ptr) + i_d * params.gx_dir_stride;
    const elem_t *x = reinterpret_cast<const elem_t *>(params.x_ptr) + i_d * params.x_dir_stride;
    const elem_t *h0 = params.h0_ptr == nullptr
        ? nullptr : reinterpret_cast<const elem_t *>(params.h0_ptr) + i_d * params.h0_dir_stride;
    const float *c0 = params.c0_ptr == nullptr ? nullptr : params.c0_ptr + i_d * params.c0_dir_stride;
    elem_t *out = reinterpret_cast<elem_t *>(params.out_ptr) + i_d * params.out_dir_stride;
    elem_t *hn = reinterpret_cast<elem_t *>(params.hn_ptr) + i_d * params.hn_dir_stride;
    elem_t *cn = reinterpret_cast<elem_t *>(params.cn_ptr) + i_d * params.cn_dir_stride;
    float *acc_dir = h_acc + int64_t(i_d) * 3 * R * P;

    // The weights, once: 16-byte chunks, chunk (4 * cell8 + gate) of row k = gate's cells 8 cell8..+7.
    for (int idx = tid; idx < P * (kGates / 8); idx += kNThreads) {
        const int k = idx / (kGates / 8), chunk = idx % (kGates / 8);
        const elem_t *src = w_hh + int64_t(k) * 4 * C + (chunk % 4) * C + c_lo + 8 * (chunk / 4);
        cp_async_16(s_whh + swizzle(k, chunk, kGates), src);
    }
    for (int idx = tid; idx < kCells * (P / 8); idx += kNThreads) {
        const int j = idx / (P / 8), chunk = idx % (P / 8);
        cp_async_16(s_wp + swizzle(j, chunk, P), w_proj + int64_t(c_lo + j) * P + 8 * chunk);
    }
    if (tid == 0) { s_len[R] = 0; }
    __syncthreads();
    for (int b = tid; b < R; b += kNThreads) {
        const int len = row_length(params.lengths_ptr, b, T);
        s_len[b] = len;
        atomicMax(&s_len[R], len);
    }
    for (int idx = tid; idx < R * kCells; idx += kNThreads) {
        const int b = idx / kCells, j = idx % kCells;
        s_c[j * ld_c + b] = c0 == nullptr ? 0.f : c0[b * params.c0_batch_stride + c_lo + j];
    }
    cp_async_wait_all();
    __syncthreads();
    const int steps = s_len[R];
    // a row that never runs keeps its initial state as the final one
    for (int idx = tid; idx < R * kCells; idx += kNThreads) {
        const int b = idx / kCells, j = idx % kCells;
        if (s_len[b] == 0) { cn[b * params.cn_batch_stride + c_lo + j] = from_float<elem_t>(s_c[j * ld_c + b]); }
    }
    for (int idx = tid; idx < R * np; idx += kNThreads) {
        const int b = idx / np, p = p_lo + idx % np;
        if (s_len[b] == 0) {
            hn[b * params.hn_batch_stride + p] =
                h0 == nullptr ? from_float<elem_t>(0.f) : h0[b * params.h0_batch_stride + p];
        }
    }

    // out (with the residual) and h_n of step sp, this block's columns, from the sum in h_sum
    auto write_step_outputs = [&](int sp, const float *h_sum) {
        for (int idx = tid; idx < R * np; idx += kNThreads) {
            const int b = idx / np, p = p_lo + idx % np, len = s_len[b];
            elem_t *p_out = out + b * params.out_batch_stride + p;
            if (sp >= len) {
                p_out[sp * params.out_time_stride] = from_float<elem_t>(0.f);
                continue;
            }
            const int t = step_position(sp, len, reverse);
            const float h = clip(__ldcg(h_sum + int64_t(b) * P + p), params.proj_clip);
            const float o =
                params.residual ? h + to_float(x[b * params.x_batch_stride + t * params.x_time_stride + p]) : h;
            p_out[t * params.out_time_stride] = from_float<elem_t>(o);
            if (sp == len - 1) { hn[b * params.hn_batch_stride + p] = from_float<elem_t>(h); }
        }
    };

    for (int s = 0; s < steps; ++s) {
        const float *h_cur = acc_dir + int64_t(s % 3) * R * P;
        float *h_next = acc_dir + int64_t((s + 1) % 3) * R * P;
        float *h_free = acc_dir + int64_t((s + 2) % 3) * R * P;
        for (int64_t idx = z_lo + tid; idx < z_hi; idx += kNThreads) { h_free[idx] = 0.f; }

        for (int r0 = 0; r0 < R; r0 += kChunkRows) {
            const int rows = min(kChunkRows, R - r0);
            bool any_active = false;
            for (int n = 0; n < rows; ++n) { any_active |= s < s_len[r0 + n]; }
            if (!any_active) { continue; }
            const int n_tiles = (rows + 7) / 8;
            const bool use_h = s > 0 || h0 != nullptr;

            // 0. the input gates of this lane's cell (gate warps) for rows 2q, 2q + 1 of each n tile:
            //    they do not depend on h, so their loads overlap the staging of h
            const int j = 8 * warp + i_g, c = c_lo + j;
            float zx[kMaxNTiles][2][4];
            #pragma unroll
            for (int nt = 0; nt < kMaxNTiles; ++nt) {
                #pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int n = nt * 8 + 2 * i_q + e, b = r0 + n;
                    #pragma unroll
                    for (int g = 0; g < 4; ++g) { zx[nt][e][g] = 0.f; }
                    if (warp < Ktraits::kGatePairs && nt < n_tiles && n < rows && s < s_len[b]) {
                        const elem_t *p_gx = gx + b * params.gx_batch_stride
                            + step_position(s, s_len[b], reverse) * params.gx_time_stride + c;
                        #pragma unroll
                        for (int g = 0; g < 4; ++g) { zx[nt][e][g] = to_float(p_gx[g * C]); }
                    }
                }
            }

            // 1. h of the chunk's active rows -> s_h (bf16), zeros elsewhere
            if (use_h) {
                const int items = n_tiles * 8 * (P / 4);
                for (int base = tid; base < items; base += kNThreads * kStageUnroll) {
                    float4 v[kStageUnroll];
                    #pragma unroll
                    for (int u = 0; u < kStageUnroll; ++u) {
                        const int idx = base + u * kNThreads;
                        const int n = idx / (P / 4), k = 4 * (idx % (P / 4)), b = r0 + n;
                        v[u] = make_float4(0.f, 0.f, 0.f, 0.f);
                        if (idx < items && n < rows && s < s_len[b]) {
                            if (s == 0) {
                                const elem_t *p_h0 = h0 + b * params.h0_batch_stride + k;
                                v[u] = make_float4(to_float(p_h0[0]), to_float(p_h0[1]), to_float(p_h0[2]),
                                                   to_float(p_h0[3]));
                            } else {
                                const float4 h = __ldcg(reinterpret_cast<const float4 *>(h_cur + int64_t(b) * P + k));
                                const float pc = params.proj_clip;
                                v[u] = make_float4(clip(h.x, pc), clip(h.y, pc), clip(h.z, pc), clip(h.w, pc));
                            }
                        }
                    }
                    #pragma unroll
                    for (int u = 0; u < kStageUnroll; ++u) {
                        const int idx = base + u * kNThreads;
                        if (idx < items) {
                            __nv_bfloat162 *dst = reinterpret_cast<__nv_bfloat162 *>(
                                s_h + (idx / (P / 4)) * ld_h + 4 * (idx % (P / 4)));
                            dst[0] = __floats2bfloat162_rn(v[u].x, v[u].y);
                            dst[1] = __floats2bfloat162_rn(v[u].z, v[u].w);
                        }
                    }
                }
                __syncthreads();
            }

            // 2. gates of 8 cells per warp (tile ij = gates i, j; tile fo = gates f, o), then the cells
            if (warp < Ktraits::kGatePairs) {
                // [tile ij | fo][n tile][k tile parity][fragment]: two k chains hide the mma latency
                float acc[2][kMaxNTiles][2][4] = {};
                if (use_h) {
                    const int a_row = (lane & 7) + ((lane >> 4) << 3);
                    const int a_chunk = 4 * warp + ((lane >> 3) & 1);
                    const int b_row = lane & 7, b_col = ((lane >> 3) & 1) << 3;
                    for (int kt = 0; kt < P / 16; kt += 2) {
                        #pragma unroll
                        for (int par = 0; par < 2; ++par) {
                            const int k0 = (kt + par) * 16;
                            uint32_t a_ij[4], a_fo[4];
                            ldmatrix_x4_trans(a_ij, s_whh + swizzle(k0 + a_row, a_chunk, kGates));
                            ldmatrix_x4_trans(a_fo, s_whh + swizzle(k0 + a_row, a_chunk + 2, kGates));
                            #pragma unroll
                            for (int nt = 0; nt < kMaxNTiles; ++nt) {
                                if (nt < n_tiles) {
                                    uint32_t b_h[2];
                                    ldmatrix_x2(b_h, s_h + (nt * 8 + b_row) * ld_h + k0 + b_col);
                                    mma_bf16_16816(acc[0][nt][par], a_ij, b_h[0], b_h[1]);
                                    mma_bf16_16816(acc[1][nt][par], a_fo, b_h[0], b_h[1]);
                                }
                            }
                        }
                    }
                }
                #pragma unroll
                for (int nt = 0; nt < kMaxNTiles; ++nt) {
                    #pragma unroll
                    for (int e = 0; e < 2; ++e) {
                        const int n = nt * 8 + 2 * i_q + e, b = r0 + n;
                        if (nt >= n_tiles) { continue; }
                        float a = 0.f;
                        if (n < rows && s < s_len[b]) {
                            const float zi = acc[0][nt][0][e] + acc[0][nt][1][e] + zx[nt][e][0];
                            const float zj = acc[0][nt][0][2 + e] + acc[0][nt][1][2 + e] + zx[nt][e][1];
                            const float zf = acc[1][nt][0][e] + acc[1][nt][1][e] + zx[nt][e][2];
                            const float zo = acc[1][nt][0][2 + e] + acc[1][nt][1][2 + e] + zx[nt][e][3];
                            float *p_c = s_c + j * ld_c + b;
                            const CellOut cell = lstm_cell(zi, zj, zf, zo, *p_c, params.cell_clip);
                            *p_c = cell.c;
                            a = cell.a;
                            if (s == s_len[b] - 1) { cn[b * params.cn_batch_stride + c] = from_float<elem_t>(cell.c); }
                        }
                        s_a[n * ld_a + j] = __float2bfloat16_rn(a);
                    }
                }
            }
            __syncthreads();

            // 3. partial projection a @ w_proj[cells] for 16 columns per warp pass, reduced in h_next
            {
                const int m_tiles = (rows + 15) / 16;
                uint32_t a_frag[kMaxMTiles][Ktraits::kProjKTiles][4];
                #pragma unroll
                for (int mt = 0; mt < kMaxMTiles; ++mt) {
                    #pragma unroll
                    for (int kt = 0; kt < Ktraits::kProjKTiles; ++kt) {
                        if (mt < m_tiles) {
                            const int row = 16 * mt + (lane & 7) + (((lane >> 3) & 1) << 3);
                            ldmatrix_x4(a_frag[mt][kt], s_a + row * ld_a + 16 * kt + ((lane >> 4) << 3));
                        }
                    }
                }
                const int w_row = (lane & 7) + (((lane >> 3) & 1) << 3);
                for (int pp = warp; pp < P / 16; pp += kNWarps) {
                    // [m tile][n tile][fragment]
                    float acc[kMaxMTiles][2][4] = {};
                    #pragma unroll
                    for (int kt = 0; kt < Ktraits::kProjKTiles; ++kt) {
                        uint32_t b_w[4];
                        ldmatrix_x4_trans(b_w, s_wp + swizzle(16 * kt + w_row, 2 * pp + (lane >> 4), P));
                        #pragma unroll
                        for (int mt = 0; mt < kMaxMTiles; ++mt) {
                            if (mt < m_tiles) {
                                mma_bf16_16816(acc[mt][0], a_frag[mt][kt], b_w[0], b_w[1]);
                                mma_bf16_16816(acc[mt][1], a_frag[mt][kt], b_w[2], b_w[3]);
                            }
                        }
                    }
                    #pragma unroll
                    for (int mt = 0; mt < kMaxMTiles; ++mt) {
                        #pragma unroll
                        for (int half = 0; half < 2; ++half) {
                            const int n = 16 * mt + 8 * half + i_g, b = r0 + n;
                            if (mt < m_tiles && n < rows && s < s_len[b]) {
                                float *dst = h_next + int64_t(b) * P + 16 * pp + 2 * i_q;
                                atomic_add2(dst, acc[mt][0][2 * half], acc[mt][0][2 * half + 1]);
                                atomic_add2(dst + 8, acc[mt][1][2 * half], acc[mt][1][2 * half + 1]);
                            }
                        }
                    }
                }
            }
            __syncthreads();
        }
        // step s - 1's sum stays in h_cur until step s + 1 zeroes it: its outputs are written off the
        // critical path, while the other blocks finish step s
        if (s > 0) { write_step_outputs(s - 1, h_cur); }
        grid.sync();
    }
    if (steps > 0) { write_step_outputs(steps - 1, acc_dir + int64_t(steps % 3) * R * P); }

    // positions no row reaches
    for (int t = steps; t < T; ++t) {
        for (int idx = tid; idx < R * np; idx += kNThreads) {
            const int b = idx / np, p = p_lo + idx % np;
            out[b * params.out_batch_stride + t * params.out_time_stride + p] = from_float<elem_t>(0.f);
        }
    }
#endif
}

}  // namespace elmo_fast
