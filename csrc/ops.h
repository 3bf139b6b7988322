// C++ signatures of the elmo_fast ops whose kernels live in more than one file: every device's
// kernel is checked against them at compile time (static_assert), so a schema change in ops.cpp
// that misses one device fails its build instead of its registration at import time.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace elmo_fast {

// lstmp(x, lengths, w_ih, w_hh, bias, w_proj, h0, c0, cell_clip, proj_clip, residual,
//       w_ih_packed, w_hh_packed, w_proj_packed, w_ih_scale, w_hh_scale, w_proj_scale)
using LstmpSignature = std::tuple<at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, std::optional<double>, std::optional<double>, bool,
    const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
    const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, const std::optional<at::Tensor>&);

}  // namespace elmo_fast
