// Plain C++ interface between the torch glue (lstmp_cuda.cpp) and the CUDA launchers (*.cu): raw
// pointers, sizes and int64 strides only, so the .cu files compile with nvcc alone (no torch headers).
// Semantics of every field: elmo_fast.reference.lstmp_ref.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

namespace elmo_fast {

// Element type of x, gx, the weights, h0, out, h_n and c_n; c0 and every internal state are float32.
enum class LstmpDtype : int { kFloat32 = 0, kBFloat16 = 1 };

struct LstmpParams {
    using index_t = int64_t;

    // D (1 or 2; direction 1 reads each row right to left from its own last position), B, T, P_in, C, P
    int num_dirs, batch, width, input_dim, cell_dim, proj_dim;
    // <= 0 means no clipping
    float cell_clip, proj_clip;
    // out = clip(h) + x at real positions (needs input_dim == proj_dim)
    bool residual;
    LstmpDtype dtype;
    // Direction index of dir 0 of these pointers: launchers that split the directions set it; callers pass 0.
    int first_dir;

    // Layer input (D, B, T, P_in), last dim contiguous; only read for the residual.
    const void *__restrict__ x_ptr;
    index_t x_dir_stride, x_batch_stride, x_time_stride;
    // Input gates x @ w_ih + bias (bias included), (D, B, T, 4C), last dim contiguous, at original positions.
    const void *__restrict__ gx_ptr;
    index_t gx_dir_stride, gx_batch_stride, gx_time_stride;
    // (B,) tokens per row; values are clamped to [0, T].
    const int64_t *__restrict__ lengths_ptr;
    // Recurrent weights (D, P, 4C) and projection (D, C, P), contiguous; gate blocks i, j, f, o.
    const void *__restrict__ w_hh_ptr;
    const void *__restrict__ w_proj_ptr;
    // Initial state, or nullptr for zeros: h0 (D, B, P) in the element type, c0 (D, B, C) float32.
    const void *h0_ptr;
    index_t h0_dir_stride, h0_batch_stride;
    const float *c0_ptr;
    index_t c0_dir_stride, c0_batch_stride;

    // Outputs: out (D, B, T, P); final state h_n (D, B, P) and c_n (D, B, C) after each row's last position.
    void *__restrict__ out_ptr;
    index_t out_dir_stride, out_batch_stride, out_time_stride;
    void *__restrict__ hn_ptr;
    index_t hn_dir_stride, hn_batch_stride;
    void *__restrict__ cn_ptr;
    index_t cn_dir_stride, cn_batch_stride;
};

// What a launcher reports: cudaSuccess, or the CUDA error and the call or launch that raised it.
struct LstmpStatus {
    cudaError_t error;
    const char *where;
};

// How the persistent kernel covers a layer; rows_per_launch == 0 means it cannot run it here.
struct LstmpPersistentPlan {
    int cells_per_block;   // cells (of each gate) whose weights one block keeps in shared memory
    int dirs_per_launch;   // D when every direction fits on chip at once, else 1 (one launch each)
    int rows_per_launch;   // batch rows per launch; larger batches run in several launches
    int blocks;            // grid size of one launch (dirs_per_launch * C / cells_per_block)
    size_t smem_bytes;     // dynamic shared memory per block
    const char *reason;    // why rows_per_launch == 0, for error messages and tests
};

// Plan the persistent kernel for these shapes on the current device (bf16 only).
LstmpStatus lstmp_persistent_plan(const LstmpParams &params, LstmpPersistentPlan *plan);
size_t lstmp_persistent_workspace_bytes(const LstmpParams &params, const LstmpPersistentPlan &plan);
// One cooperative launch per (direction group, row group) on `stream`; `workspace` is device memory
// of lstmp_persistent_workspace_bytes() bytes, 256-byte aligned.
LstmpStatus lstmp_persistent_fwd(const LstmpParams &params, const LstmpPersistentPlan &plan, void *workspace,
                                 cudaStream_t stream);

// The per-step path (float32 or bf16 weights, any shape): two launches per time step.
size_t lstmp_step_workspace_bytes(const LstmpParams &params);
LstmpStatus lstmp_step_fwd(const LstmpParams &params, void *workspace, cudaStream_t stream);

}  // namespace elmo_fast
