// CUDA kernels of the elmo_fast::lstmp op (schema in csrc/ops.cpp): tensor checks, the input
// product (cuBLAS through ATen), then the persistent kernel for bf16 layers whose weights fit on chip
// and the per-step kernels otherwise. Built only where torch is a CUDA build (setup.py).
#include <atomic>
#include <optional>
#include <tuple>
#include <type_traits>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <pybind11/pybind11.h>
#include <torch/library.h>

#include "../ops.h"
#include "lstmp_params.h"

namespace elmo_fast {
namespace {

// Tests and benchmarks switch the persistent kernel off to run the per-step path on the same shapes.
std::atomic<bool> persistent_enabled{true};

LstmpDtype to_lstmp_dtype(at::ScalarType dtype) {
    TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16,
                "elmo_fast lstmp (cuda): x must be float32 or bfloat16, got ", dtype);
    return dtype == at::kFloat ? LstmpDtype::kFloat32 : LstmpDtype::kBFloat16;
}

void check_shape(const at::Tensor &t, c10::IntArrayRef shape, const char *name) {
    TORCH_CHECK(t.sizes() == shape, "elmo_fast lstmp (cuda): ", name, " has shape ", t.sizes(), ", expected ", shape);
}

// A tensor of `dtype` on x's device whose last dim is contiguous (copies only when needed).
at::Tensor prepare(const at::Tensor &t, const at::Tensor &x, at::ScalarType dtype, const char *name) {
    TORCH_CHECK(t.device() == x.device(), "elmo_fast lstmp (cuda): ", name, " is on ", t.device(), ", x on ",
                x.device());
    at::Tensor out = t.to(dtype);
    return out.stride(-1) == 1 ? out : out.contiguous();
}

void check_status(const LstmpStatus &status) {
    TORCH_CHECK(status.error == cudaSuccess, "elmo_fast lstmp (cuda): ", status.where, " failed: ",
                cudaGetErrorString(status.error));
}

LstmpParams make_params(const at::Tensor &x, const at::Tensor &gx, const at::Tensor &lengths, const at::Tensor &w_hh,
                        const at::Tensor &w_proj, const std::optional<at::Tensor> &h0,
                        const std::optional<at::Tensor> &c0, const at::Tensor &out, const at::Tensor &h_n,
                        const at::Tensor &c_n, double cell_clip, double proj_clip, bool residual) {
    LstmpParams p{};
    p.num_dirs = int(x.size(0));
    p.batch = int(x.size(1));
    p.width = int(x.size(2));
    p.input_dim = int(x.size(3));
    p.cell_dim = int(w_proj.size(1));
    p.proj_dim = int(w_proj.size(2));
    p.cell_clip = float(cell_clip);
    p.proj_clip = float(proj_clip);
    p.residual = residual;
    p.dtype = to_lstmp_dtype(x.scalar_type());
    p.first_dir = 0;
    p.x_ptr = x.data_ptr();
    p.x_dir_stride = x.stride(0), p.x_batch_stride = x.stride(1), p.x_time_stride = x.stride(2);
    p.gx_ptr = gx.data_ptr();
    p.gx_dir_stride = gx.stride(0), p.gx_batch_stride = gx.stride(1), p.gx_time_stride = gx.stride(2);
    p.lengths_ptr = lengths.data_ptr<int64_t>();
    p.w_hh_ptr = w_hh.data_ptr();
    p.w_proj_ptr = w_proj.data_ptr();
    if (h0.has_value()) {
        p.h0_ptr = h0->data_ptr();
        p.h0_dir_stride = h0->stride(0), p.h0_batch_stride = h0->stride(1);
        p.c0_ptr = c0->data_ptr<float>();
        p.c0_dir_stride = c0->stride(0), p.c0_batch_stride = c0->stride(1);
    }
    p.out_ptr = out.data_ptr();
    p.out_dir_stride = out.stride(0), p.out_batch_stride = out.stride(1), p.out_time_stride = out.stride(2);
    p.hn_ptr = h_n.data_ptr();
    p.hn_dir_stride = h_n.stride(0), p.hn_batch_stride = h_n.stride(1);
    p.cn_ptr = c_n.data_ptr();
    p.cn_dir_stride = c_n.stride(0), p.cn_batch_stride = c_n.stride(1);
    return p;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstmp_cuda(
    const at::Tensor &x_in, const at::Tensor &lengths_in, const at::Tensor &w_ih_in, const at::Tensor &w_hh_in,
    const at::Tensor &bias_in, const at::Tensor &w_proj_in, const std::optional<at::Tensor> &h0_in,
    const std::optional<at::Tensor> &c0_in, std::optional<double> cell_clip, std::optional<double> proj_clip,
    bool residual, const std::optional<at::Tensor> & /*w_ih_packed*/, const std::optional<at::Tensor> & /*w_hh_packed*/,
    const std::optional<at::Tensor> & /*w_proj_packed*/, const std::optional<at::Tensor> & /*w_ih_scale*/,
    const std::optional<at::Tensor> & /*w_hh_scale*/, const std::optional<at::Tensor> & /*w_proj_scale*/) {
    // The *_packed / *_scale arguments (schema args of the cpp backend) are the CPU kernels' panel
    // layouts of the same weights; the CUDA kernels read w_ih / w_hh / w_proj
    TORCH_CHECK(x_in.is_cuda() && x_in.dim() == 4, "elmo_fast lstmp (cuda): x must be a (D, B, T, P_in) CUDA tensor");
    const int64_t D = x_in.size(0), B = x_in.size(1), T = x_in.size(2), P_in = x_in.size(3);
    TORCH_CHECK(D == 1 || D == 2, "elmo_fast lstmp (cuda): x must stack 1 or 2 directions on dim 0, got ", D);
    TORCH_CHECK(w_proj_in.dim() == 3, "elmo_fast lstmp (cuda): w_proj must be (D, C, P)");
    const int64_t C = w_proj_in.size(1), P = w_proj_in.size(2);
    check_shape(w_ih_in, {D, P_in, 4 * C}, "w_ih");
    check_shape(w_hh_in, {D, P, 4 * C}, "w_hh");
    check_shape(bias_in, {D, 4 * C}, "bias");
    check_shape(w_proj_in, {D, C, P}, "w_proj");
    check_shape(lengths_in, {B}, "lengths");
    TORCH_CHECK(h0_in.has_value() == c0_in.has_value(), "elmo_fast lstmp (cuda): give both h0 and c0, or neither");
    TORCH_CHECK(!residual || P_in == P, "elmo_fast lstmp (cuda): residual needs input width ", P_in,
                " == projection width ", P);
    const double cell_bound = cell_clip.value_or(0.0), proj_bound = proj_clip.value_or(0.0);
    TORCH_CHECK(cell_bound >= 0 && proj_bound >= 0, "elmo_fast lstmp (cuda): clip values must be >= 0 (0: no clip)");
    const at::ScalarType dtype = x_in.scalar_type();
    to_lstmp_dtype(dtype);
    const c10::cuda::CUDAGuard guard(x_in.device());

    // weights in x's dtype (a bf16 model needs no copy), last dim contiguous
    const at::Tensor x = prepare(x_in, x_in, dtype, "x");
    const at::Tensor w_ih = prepare(w_ih_in, x, dtype, "w_ih");
    const at::Tensor w_hh = prepare(w_hh_in, x, dtype, "w_hh").contiguous();
    const at::Tensor bias = prepare(bias_in, x, dtype, "bias");
    const at::Tensor w_proj = prepare(w_proj_in, x, dtype, "w_proj").contiguous();
    const at::Tensor lengths = lengths_in.to(x.device(), at::kLong).contiguous();
    std::optional<at::Tensor> h0, c0;
    if (h0_in.has_value()) {
        check_shape(*h0_in, {D, B, P}, "h0");
        check_shape(*c0_in, {D, B, C}, "c0");
        h0 = prepare(*h0_in, x, dtype, "h0");
        c0 = prepare(*c0_in, x, at::kFloat, "c0");
    }
    at::Tensor out = at::empty({D, B, T, P}, x.options());
    if (B == 0 || T == 0) {
        out.zero_();
        at::Tensor h_n = h0.has_value() ? h0->clone() : at::zeros({D, B, P}, x.options());
        at::Tensor c_n = c0.has_value() ? c0->to(dtype, /*non_blocking=*/false, /*copy=*/true)
                                        : at::zeros({D, B, C}, x.options());
        return {out, h_n, c_n};
    }
    at::Tensor h_n = at::empty({D, B, P}, x.options());
    at::Tensor c_n = at::empty({D, B, C}, x.options());
    // input gates for every position at once: [D, B * T, 4C]
    const at::Tensor gx = at::baddbmm(bias.unsqueeze(1), x.reshape({D, B * T, P_in}), w_ih).view({D, B, T, 4 * C});

    const LstmpParams params = make_params(x, gx, lengths, w_hh, w_proj, h0, c0, out, h_n, c_n, cell_bound, proj_bound,
                                           residual);
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    LstmpPersistentPlan plan{};
    if (persistent_enabled.load()) { check_status(lstmp_persistent_plan(params, &plan)); }
    const bool persistent = plan.rows_per_launch > 0;
    const size_t workspace_bytes =
        persistent ? lstmp_persistent_workspace_bytes(params, plan) : lstmp_step_workspace_bytes(params);
    at::Tensor workspace = at::empty({int64_t(workspace_bytes)}, x.options().dtype(at::kByte));
    check_status(persistent ? lstmp_persistent_fwd(params, plan, workspace.data_ptr(), stream)
                            : lstmp_step_fwd(params, workspace.data_ptr(), stream));
    return {out, h_n, c_n};
}

// The plan for a layer of these shapes on the current device, for tests and benchmarks.
pybind11::dict persistent_plan(int64_t num_dirs, int64_t batch, int64_t cell_dim, int64_t proj_dim, bool bf16) {
    LstmpParams params{};
    params.num_dirs = int(num_dirs), params.batch = int(batch), params.cell_dim = int(cell_dim);
    params.proj_dim = int(proj_dim);
    params.dtype = bf16 ? LstmpDtype::kBFloat16 : LstmpDtype::kFloat32;
    LstmpPersistentPlan plan{};
    check_status(lstmp_persistent_plan(params, &plan));
    pybind11::dict out;
    out["persistent"] = plan.rows_per_launch > 0 && persistent_enabled.load();
    out["cells_per_block"] = plan.cells_per_block;
    out["dirs_per_launch"] = plan.dirs_per_launch;
    out["rows_per_launch"] = plan.rows_per_launch;
    out["blocks"] = plan.blocks;
    out["smem_bytes"] = plan.smem_bytes;
    out["reason"] = plan.reason == nullptr ? "" : plan.reason;
    return out;
}

}  // namespace

static_assert(std::is_same_v<decltype(lstmp_cuda), LstmpSignature>, "lstmp_cuda must match the lstmp schema (csrc/ops.h)");

TORCH_LIBRARY_IMPL(elmo_fast, CUDA, m) { m.impl("lstmp", &lstmp_cuda); }

}  // namespace elmo_fast

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    // the op schema lives in elmo_fast._C; without it this library's kernel could never be called
    pybind11::module_::import("elmo_fast._C");
    m.doc() = "CUDA kernels of the elmo_fast ops (registered with the dispatcher on import).";
    m.def("persistent_plan", &elmo_fast::persistent_plan, "How the persistent lstmp kernel would run a layer here.",
          pybind11::arg("num_dirs"), pybind11::arg("batch"), pybind11::arg("cell_dim"), pybind11::arg("proj_dim"),
          pybind11::arg("bf16") = true);
    m.def("set_persistent_enabled", [](bool enabled) { elmo_fast::persistent_enabled.store(enabled); },
          "Switch the persistent lstmp kernel on or off (off: every layer runs the per-step kernels).");
}
