// Device helpers shared by the lstmp kernels: element conversions, the LSTM cell, positions.
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "lstmp_params.h"

namespace elmo_fast {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename elem_t>
__device__ __forceinline__ elem_t from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Accurate libm versions on purpose: the float32 path promises <= 1e-5 against the reference.
__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }

__device__ __forceinline__ float clip(float v, float bound) {
    return bound > 0.f ? fminf(fmaxf(v, -bound), bound) : v;
}

// Row length clamped to [0, width].
__device__ __forceinline__ int row_length(const int64_t *lengths, int64_t b, int width) {
    const int64_t len = lengths[b];
    return len < 0 ? 0 : (len > width ? width : static_cast<int>(len));
}

// The position a row of length `len` reads and writes at step s (< len): the backward direction
// starts at the row's own last position.
__device__ __forceinline__ int step_position(int s, int len, bool reverse) { return reverse ? len - 1 - s : s; }

struct CellOut {
    float c;  // the clipped cell, which is what is carried
    float a;  // sigmoid(o) * tanh(c), the input of the projection
};

// One LSTM cell update from the four gate pre-activations (TF order i, j, f, o).
__device__ __forceinline__ CellOut lstm_cell(float zi, float zj, float zf, float zo, float c_prev, float cell_clip) {
    const float c = clip(sigmoid(zf) * c_prev + sigmoid(zi) * tanhf(zj), cell_clip);
    return {c, sigmoid(zo) * tanhf(c)};
}

}  // namespace elmo_fast
