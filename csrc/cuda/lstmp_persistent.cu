// Persistent LSTM with projection, the host side: the plan (does a layer fit on chip, in how many
// launches), the cooperative launches on the caller's stream, and the explicit instantiations. The
// kernel and its design: lstmp_persistent.cuh.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "lstmp_params.h"
#include "lstmp_persistent.cuh"

namespace elmo_fast {

template <int kCells>
using PersistentTraits = LstmpPersistentTraits<256, 32, kCells>;

namespace {

template <typename T>
T *offset_ptr(T *ptr, int64_t elements, size_t elem_size) {
    using byte_t = typename std::conditional<std::is_const<T>::value, const char, char>::type;
    if (ptr == nullptr) { return nullptr; }
    return reinterpret_cast<T *>(reinterpret_cast<byte_t *>(ptr) + elements * int64_t(elem_size));
}

// The params of one launch: directions [d0, d0 + dirs) and rows [b0, b0 + rows).
LstmpParams slice_params(const LstmpParams &params, int d0, int dirs, int b0, int rows) {
    constexpr size_t kElem = sizeof(__nv_bfloat16);
    LstmpParams p = params;
    p.num_dirs = dirs;
    p.batch = rows;
    p.first_dir = params.first_dir + d0;
    p.x_ptr = offset_ptr(params.x_ptr, d0 * params.x_dir_stride + b0 * params.x_batch_stride, kElem);
    p.gx_ptr = offset_ptr(params.gx_ptr, d0 * params.gx_dir_stride + b0 * params.gx_batch_stride, kElem);
    p.lengths_ptr = params.lengths_ptr + b0;
    p.w_hh_ptr = offset_ptr(params.w_hh_ptr, int64_t(d0) * params.proj_dim * 4 * params.cell_dim, kElem);
    p.w_proj_ptr = offset_ptr(params.w_proj_ptr, int64_t(d0) * params.cell_dim * params.proj_dim, kElem);
    p.h0_ptr = offset_ptr(params.h0_ptr, d0 * params.h0_dir_stride + b0 * params.h0_batch_stride, kElem);
    p.c0_ptr = offset_ptr(params.c0_ptr, d0 * params.c0_dir_stride + b0 * params.c0_batch_stride, sizeof(float));
    p.out_ptr = offset_ptr(params.out_ptr, d0 * params.out_dir_stride + b0 * params.out_batch_stride, kElem);
    p.hn_ptr = offset_ptr(params.hn_ptr, d0 * params.hn_dir_stride + b0 * params.hn_batch_stride, kElem);
    p.cn_ptr = offset_ptr(params.cn_ptr, d0 * params.cn_dir_stride + b0 * params.cn_batch_stride, kElem);
    return p;
}

template <int kCells>
cudaError_t max_blocks_per_sm(size_t smem_bytes, int *blocks) {
    using Ktraits = PersistentTraits<kCells>;
    auto kernel = &lstmp_persistent_fwd_kernel<Ktraits>;
    cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem_bytes));
    if (err != cudaSuccess) { return err; }
    return cudaOccupancyMaxActiveBlocksPerMultiprocessor(blocks, kernel, Ktraits::kNThreads, smem_bytes);
}

cudaError_t max_blocks_per_sm(int cells, size_t smem_bytes, int *blocks) {
    return cells == 16 ? max_blocks_per_sm<16>(smem_bytes, blocks) : max_blocks_per_sm<32>(smem_bytes, blocks);
}

bool aligned16(const void *ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

}  // namespace

template <int kCells>
LstmpStatus lstmp_persistent_fwd_cuda(const LstmpParams &params, const LstmpPersistentPlan &plan, void *workspace,
                                      cudaStream_t stream) {
    using Ktraits = PersistentTraits<kCells>;
    auto kernel = &lstmp_persistent_fwd_kernel<Ktraits>;
    cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(plan.smem_bytes));
    if (err != cudaSuccess) { return {err, "cudaFuncSetAttribute(lstmp_persistent_fwd_kernel)"}; }
    float *h_acc = static_cast<float *>(workspace);
    for (int d0 = 0; d0 < params.num_dirs; d0 += plan.dirs_per_launch) {
        const int dirs = std::min(plan.dirs_per_launch, params.num_dirs - d0);
        for (int b0 = 0; b0 < params.batch; b0 += plan.rows_per_launch) {
            LstmpParams p = slice_params(params, d0, dirs, b0, std::min(plan.rows_per_launch, params.batch - b0));
            const size_t smem = persistent_smem_layout(kCells, p.proj_dim, p.batch, Ktraits::kChunkRows).total;
            const size_t slot = sizeof(float) * size_t(p.batch) * p.proj_dim;
            // buffer 1 of each direction receives step 0's partial projections
            for (int d = 0; d < dirs; ++d) {
                err = cudaMemsetAsync(reinterpret_cast<char *>(h_acc) + (3 * d + 1) * slot, 0, slot, stream);
                if (err != cudaSuccess) { return {err, "cudaMemsetAsync(lstmp persistent workspace)"}; }
            }
            void *args[] = {&p, &h_acc};
            const dim3 grid(dirs * (p.cell_dim / kCells));
            err = cudaLaunchCooperativeKernel(reinterpret_cast<const void *>(kernel), grid, dim3(Ktraits::kNThreads),
                                              args, smem, stream);
            if (err != cudaSuccess) { return {err, "cudaLaunchCooperativeKernel(lstmp_persistent_fwd_kernel)"}; }
        }
    }
    return {cudaSuccess, nullptr};
}

LstmpStatus lstmp_persistent_plan(const LstmpParams &params, LstmpPersistentPlan *plan) {
    *plan = LstmpPersistentPlan{0, 0, 0, 0, 0, nullptr};
    const int C = params.cell_dim, P = params.proj_dim, B = params.batch;
    if (params.dtype != LstmpDtype::kBFloat16) {
        plan->reason = "the persistent kernel keeps bf16 weights on chip (float32 ones run per step)";
        return {cudaSuccess, nullptr};
    }
    if (P % 64 != 0 || C % 16 != 0 || B < 1) {
        plan->reason = "the persistent kernel needs proj_dim % 64 == 0, cell_dim % 16 == 0 and a non-empty batch";
        return {cudaSuccess, nullptr};
    }
    if (!aligned16(params.w_hh_ptr) || !aligned16(params.w_proj_ptr)) {
        plan->reason = "the persistent kernel needs 16-byte aligned weights";
        return {cudaSuccess, nullptr};
    }
    int device = 0, major = 0, sms = 0, smem_optin = 0, cooperative = 0;
    cudaError_t err = cudaGetDevice(&device);
    if (err == cudaSuccess) { err = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device); }
    if (err == cudaSuccess) { err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device); }
    if (err == cudaSuccess) {
        err = cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    }
    if (err == cudaSuccess) { err = cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, device); }
    if (err != cudaSuccess) { return {err, "cudaDeviceGetAttribute (lstmp persistent plan)"}; }
    if (major < 8 || !cooperative) {
        plan->reason = "the persistent kernel needs compute capability 8.0+ and cooperative launch";
        return {cudaSuccess, nullptr};
    }
    constexpr int kChunkRows = PersistentTraits<16>::kChunkRows;
    const int dir_options[2] = {params.num_dirs, 1};
    for (int dirs : dir_options) {
        // fewer cells per block first: more blocks share the per-step work
        for (int cells : {16, 32}) {
            const int blocks = dirs * (C / cells);
            if (C % cells != 0 || blocks > sms) { continue; }
            const auto smem_for = [&](int rows) { return persistent_smem_layout(cells, P, rows, kChunkRows).total; };
            if (smem_for(1) > size_t(smem_optin)) { continue; }
            // each row costs its cell state (4 bytes per cell, plus pitch padding) and its length
            int rows = std::min(B, int((size_t(smem_optin) - smem_for(0)) / (4 * cells)) + 1);
            while (rows > 0 && smem_for(rows) > size_t(smem_optin)) { --rows; }
            if (rows == 0) { continue; }
            const size_t smem = smem_for(rows);
            int per_sm = 0;
            err = max_blocks_per_sm(cells, smem, &per_sm);
            if (err != cudaSuccess) { return {err, "cudaOccupancyMaxActiveBlocksPerMultiprocessor (lstmp plan)"}; }
            if (per_sm * sms < blocks) { continue; }
            *plan = LstmpPersistentPlan{cells, dirs, rows, blocks, smem, nullptr};
            return {cudaSuccess, nullptr};
        }
        if (dirs == 1) { break; }
    }
    plan->reason = "the layer's bf16 weights do not fit in the shared memory of this device's SMs";
    return {cudaSuccess, nullptr};
}

size_t lstmp_persistent_workspace_bytes(const LstmpParams &params, const LstmpPersistentPlan &plan) {
    return sizeof(float) * 3 * size_t(plan.dirs_per_launch) * size_t(plan.rows_per_launch) * size_t(params.proj_dim);
}

LstmpStatus lstmp_persistent_fwd(const LstmpParams &params, const LstmpPersistentPlan &plan, void *workspace,
                                 cudaStream_t stream) {
    if (plan.rows_per_launch <= 0) { return {cudaErrorInvalidValue, "lstmp_persistent_fwd: no plan for these shapes"}; }
    switch (plan.cells_per_block) {
        case 16:
            return lstmp_persistent_fwd_cuda<16>(params, plan, workspace, stream);
        case 32:
            return lstmp_persistent_fwd_cuda<32>(params, plan, workspace, stream);
    }
    return {cudaErrorInvalidValue, "lstmp_persistent_fwd: unsupported cells per block"};
}

template LstmpStatus lstmp_persistent_fwd_cuda<16>(const LstmpParams &, const LstmpPersistentPlan &, void *,
                                                   cudaStream_t);
template LstmpStatus lstmp_persistent_fwd_cuda<32>(const LstmpParams &, const LstmpPersistentPlan &, void *,
                                                   cudaStream_t);

}  // namespace elmo_fast
