// Per-step LSTM with projection: the fallback for shapes the persistent kernel cannot keep on chip
// and the float32 path (<= 1e-5 against elmo_fast.reference.lstmp_ref). Each time step is two
// launches on the caller's stream:
//   1. lstmp_step_cell_kernel: h_{t-1} @ w_hh for a tile of cells and rows, plus the input gates,
//      then the clipped float32 cell update and a = sigmoid(o) * tanh(c);
//   2. lstmp_step_proj_kernel: a @ w_proj, the projection clip, the residual and every output write.
// At step s a row is active while s < length; the forward direction reads and writes position s,
// the backward one the row's own position length - 1 - s; an inactive row writes 0 at position s,
// so each of the T positions is written exactly once and the host needs no lengths.
// Products are plain float32 FMAs in a fixed order (no tensor cores), so float32 results do not
// depend on TF32 settings. Each kChunk slice of a product is summed from zero and then added to the
// running sum: one running sum over the original model's 4096 cells has about 3x the float32 error
// of a blocked sum (measured on the CPU kernels, whose order this mirrors: benchmarks/accuracy.py).
// Transcendentals are expf/tanhf (lstmp_common.cuh); setup.py builds without --use_fast_math.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "lstmp_common.cuh"
#include "lstmp_params.h"

namespace elmo_fast {

template <int kNThreads_, int kRows_, int kChunk_, typename elem_t_>
struct LstmpStepTraits {
    using elem_t = elem_t_;
    // one thread per cell (or projection output) of the tile
    static constexpr int kNThreads = kNThreads_;
    // batch rows per block: each weight loaded is used kRows times
    static constexpr int kRows = kRows_;
    // reduction-dim slice of h (or a) staged in shared memory per pass
    static constexpr int kChunk = kChunk_;
    static_assert(kNThreads % 32 == 0 && kRows <= kNThreads, "tile shape");
};

template <typename Ktraits>
__device__ __forceinline__ void load_lengths(const LstmpParams &params, int b0, int *s_len) {
    if (threadIdx.x < Ktraits::kRows) {
        const int b = b0 + threadIdx.x;
        s_len[threadIdx.x] = b < params.batch ? row_length(params.lengths_ptr, b, params.width) : 0;
    }
    __syncthreads();
}

// Grid (ceil(C / kNThreads), ceil(B / kRows), D). Workspace rows are indexed d * B + b.
template <typename Ktraits>
__global__ void __launch_bounds__(Ktraits::kNThreads)
lstmp_step_cell_kernel(const LstmpParams params, const int s, const float *__restrict__ h_state,
                       float *__restrict__ c_state, float *__restrict__ a_buf) {
    using elem_t = typename Ktraits::elem_t;
    constexpr int kNThreads = Ktraits::kNThreads;
    constexpr int kRows = Ktraits::kRows;
    constexpr int kChunk = Ktraits::kChunk;
    __shared__ float s_h[kRows][kChunk];
    __shared__ int s_len[kRows];

    const int C = params.cell_dim, P = params.proj_dim, B = params.batch;
    const int i_d = blockIdx.z;
    const int b0 = blockIdx.y * kRows;
    const int i_c = blockIdx.x * kNThreads + threadIdx.x;
    const bool reverse = params.first_dir + i_d == 1;
    const elem_t *w_hh = reinterpret_cast<const elem_t *>(params.w_hh_ptr) + int64_t(i_d) * P * 4 * C;
    const elem_t *h0 = reinterpret_cast<const elem_t *>(params.h0_ptr);
    elem_t *cn = reinterpret_cast<elem_t *>(params.cn_ptr) + i_d * params.cn_dir_stride;
    load_lengths<Ktraits>(params, b0, s_len);

    bool any_active = false;
    #pragma unroll
    for (int r = 0; r < kRows; ++r) { any_active |= s < s_len[r]; }
    // a row that never runs keeps its initial cell as the final one
    if (s == 0 && i_c < C) {
        for (int r = 0; r < kRows && b0 + r < B; ++r) {
            if (s_len[r] > 0) { continue; }
            const int64_t b = b0 + r;
            const float c0 = params.c0_ptr == nullptr
                ? 0.f : params.c0_ptr[i_d * params.c0_dir_stride + b * params.c0_batch_stride + i_c];
            cn[b * params.cn_batch_stride + i_c] = from_float<elem_t>(c0);
        }
    }
    if (!any_active) { return; }

    // [kRows][i, j, f, o]
    float acc[kRows][4] = {};
    // h_{-1} is zero unless an initial state is given
    if (s > 0 || h0 != nullptr) {
        for (int k0 = 0; k0 < P; k0 += kChunk) {
            for (int idx = threadIdx.x; idx < kRows * kChunk; idx += kNThreads) {
                const int r = idx / kChunk, k = k0 + idx % kChunk;
                const int64_t b = b0 + r;
                float v = 0.f;
                if (k < P && s < s_len[r]) {
                    v = s == 0 ? to_float(h0[i_d * params.h0_dir_stride + b * params.h0_batch_stride + k])
                               : h_state[(int64_t(i_d) * B + b) * P + k];
                }
                s_h[r][idx % kChunk] = v;
            }
            __syncthreads();
            if (i_c < C) {
                const int k_end = min(kChunk, P - k0);
                // each chunk's sum starts from zero and is then added (see the file comment)
                float part[kRows][4] = {};
                for (int kk = 0; kk < k_end; ++kk) {
                    const elem_t *p_w = w_hh + int64_t(k0 + kk) * 4 * C + i_c;
                    const float w_i = to_float(p_w[0]), w_j = to_float(p_w[C]);
                    const float w_f = to_float(p_w[2 * C]), w_o = to_float(p_w[3 * C]);
                    #pragma unroll
                    for (int r = 0; r < kRows; ++r) {
                        const float h = s_h[r][kk];
                        part[r][0] += h * w_i;
                        part[r][1] += h * w_j;
                        part[r][2] += h * w_f;
                        part[r][3] += h * w_o;
                    }
                }
                #pragma unroll
                for (int r = 0; r < kRows; ++r) {
                    #pragma unroll
                    for (int g = 0; g < 4; ++g) { acc[r][g] += part[r][g]; }
                }
            }
            __syncthreads();
        }
    }
    if (i_c >= C) { return; }

    const elem_t *gx = reinterpret_cast<const elem_t *>(params.gx_ptr) + i_d * params.gx_dir_stride + i_c;
    #pragma unroll
    for (int r = 0; r < kRows; ++r) {
        const int len = s_len[r];
        if (s >= len) { continue; }
        const int64_t b = b0 + r;
        const int64_t state = (int64_t(i_d) * B + b) * C + i_c;
        const elem_t *p_gx = gx + b * params.gx_batch_stride + step_position(s, len, reverse) * params.gx_time_stride;
        float c_prev = 0.f;
        if (s > 0) {
            c_prev = c_state[state];
        } else if (params.c0_ptr != nullptr) {
            c_prev = params.c0_ptr[i_d * params.c0_dir_stride + b * params.c0_batch_stride + i_c];
        }
        const CellOut cell = lstm_cell(acc[r][0] + to_float(p_gx[0]), acc[r][1] + to_float(p_gx[C]),
                                       acc[r][2] + to_float(p_gx[2 * C]), acc[r][3] + to_float(p_gx[3 * C]),
                                       c_prev, params.cell_clip);
        c_state[state] = cell.c;
        a_buf[state] = cell.a;
        if (s == len - 1) { cn[b * params.cn_batch_stride + i_c] = from_float<elem_t>(cell.c); }
    }
}

// Grid (ceil(P / kNThreads), ceil(B / kRows), D).
template <typename Ktraits>
__global__ void __launch_bounds__(Ktraits::kNThreads)
lstmp_step_proj_kernel(const LstmpParams params, const int s, float *__restrict__ h_state,
                       const float *__restrict__ a_buf) {
    using elem_t = typename Ktraits::elem_t;
    constexpr int kNThreads = Ktraits::kNThreads;
    constexpr int kRows = Ktraits::kRows;
    constexpr int kChunk = Ktraits::kChunk;
    __shared__ float s_a[kRows][kChunk];
    __shared__ int s_len[kRows];

    const int C = params.cell_dim, P = params.proj_dim, B = params.batch;
    const int i_d = blockIdx.z;
    const int b0 = blockIdx.y * kRows;
    const int i_p = blockIdx.x * kNThreads + threadIdx.x;
    const bool reverse = params.first_dir + i_d == 1;
    const elem_t *w_proj = reinterpret_cast<const elem_t *>(params.w_proj_ptr) + int64_t(i_d) * C * P;
    const elem_t *h0 = reinterpret_cast<const elem_t *>(params.h0_ptr);
    elem_t *hn = reinterpret_cast<elem_t *>(params.hn_ptr) + i_d * params.hn_dir_stride;
    load_lengths<Ktraits>(params, b0, s_len);

    bool any_active = false;
    #pragma unroll
    for (int r = 0; r < kRows; ++r) { any_active |= s < s_len[r]; }
    if (s == 0 && i_p < P) {
        for (int r = 0; r < kRows && b0 + r < B; ++r) {
            if (s_len[r] > 0) { continue; }
            const int64_t b = b0 + r;
            hn[b * params.hn_batch_stride + i_p] = h0 == nullptr
                ? from_float<elem_t>(0.f) : h0[i_d * params.h0_dir_stride + b * params.h0_batch_stride + i_p];
        }
    }

    float acc[kRows] = {};
    if (any_active) {
        for (int k0 = 0; k0 < C; k0 += kChunk) {
            for (int idx = threadIdx.x; idx < kRows * kChunk; idx += kNThreads) {
                const int r = idx / kChunk, k = k0 + idx % kChunk;
                const int64_t b = b0 + r;
                s_a[r][idx % kChunk] = k < C && s < s_len[r] ? a_buf[(int64_t(i_d) * B + b) * C + k] : 0.f;
            }
            __syncthreads();
            if (i_p < P) {
                const int k_end = min(kChunk, C - k0);
                float part[kRows] = {};
                for (int kk = 0; kk < k_end; ++kk) {
                    const float w = to_float(w_proj[int64_t(k0 + kk) * P + i_p]);
                    #pragma unroll
                    for (int r = 0; r < kRows; ++r) { part[r] += s_a[r][kk] * w; }
                }
                #pragma unroll
                for (int r = 0; r < kRows; ++r) { acc[r] += part[r]; }
            }
            __syncthreads();
        }
    }
    if (i_p >= P) { return; }

    #pragma unroll
    for (int r = 0; r < kRows; ++r) {
        const int64_t b = b0 + r;
        if (b >= B) { break; }
        const int len = s_len[r];
        elem_t *out = reinterpret_cast<elem_t *>(params.out_ptr) + i_d * params.out_dir_stride
            + b * params.out_batch_stride + i_p;
        if (s >= len) {
            // padding position s of this row
            out[s * params.out_time_stride] = from_float<elem_t>(0.f);
            continue;
        }
        const int t = step_position(s, len, reverse);
        const float h = clip(acc[r], params.proj_clip);
        h_state[(int64_t(i_d) * B + b) * P + i_p] = h;
        float o = h;
        if (params.residual) {
            const elem_t *x = reinterpret_cast<const elem_t *>(params.x_ptr);
            o += to_float(x[i_d * params.x_dir_stride + b * params.x_batch_stride + t * params.x_time_stride + i_p]);
        }
        out[t * params.out_time_stride] = from_float<elem_t>(o);
        if (s == len - 1) { hn[b * params.hn_batch_stride + i_p] = from_float<elem_t>(h); }
    }
}

template <typename elem_t>
LstmpStatus lstmp_step_fwd_cuda(const LstmpParams &params, void *workspace, cudaStream_t stream) {
    using Ktraits = LstmpStepTraits<128, 8, 64, elem_t>;
    constexpr int kNThreads = Ktraits::kNThreads;
    constexpr int kRows = Ktraits::kRows;
    const int64_t rows = int64_t(params.num_dirs) * params.batch;
    float *h_state = static_cast<float *>(workspace);
    float *c_state = h_state + rows * params.proj_dim;
    float *a_buf = c_state + rows * params.cell_dim;
    const dim3 grid_cell((params.cell_dim + kNThreads - 1) / kNThreads, (params.batch + kRows - 1) / kRows,
                         params.num_dirs);
    const dim3 grid_proj((params.proj_dim + kNThreads - 1) / kNThreads, (params.batch + kRows - 1) / kRows,
                         params.num_dirs);
    for (int s = 0; s < params.width; ++s) {
        lstmp_step_cell_kernel<Ktraits><<<grid_cell, kNThreads, 0, stream>>>(params, s, h_state, c_state, a_buf);
        cudaError_t err = cudaGetLastError();
        if (err != cudaSuccess) { return {err, "lstmp_step_cell_kernel launch"}; }
        lstmp_step_proj_kernel<Ktraits><<<grid_proj, kNThreads, 0, stream>>>(params, s, h_state, a_buf);
        err = cudaGetLastError();
        if (err != cudaSuccess) { return {err, "lstmp_step_proj_kernel launch"}; }
    }
    return {cudaSuccess, nullptr};
}

size_t lstmp_step_workspace_bytes(const LstmpParams &params) {
    const size_t rows = size_t(params.num_dirs) * size_t(params.batch);
    return sizeof(float) * rows * (size_t(params.proj_dim) + 2 * size_t(params.cell_dim));
}

LstmpStatus lstmp_step_fwd(const LstmpParams &params, void *workspace, cudaStream_t stream) {
    switch (params.dtype) {
        case LstmpDtype::kFloat32:
            return lstmp_step_fwd_cuda<float>(params, workspace, stream);
        case LstmpDtype::kBFloat16:
            return lstmp_step_fwd_cuda<__nv_bfloat16>(params, workspace, stream);
    }
    return {cudaErrorInvalidValue, "lstmp_step_fwd: unknown dtype"};
}

template LstmpStatus lstmp_step_fwd_cuda<float>(const LstmpParams &, void *, cudaStream_t);
template LstmpStatus lstmp_step_fwd_cuda<__nv_bfloat16>(const LstmpParams &, void *, cudaStream_t);

}  // namespace elmo_fast
