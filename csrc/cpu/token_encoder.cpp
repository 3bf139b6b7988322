// CPU forward of the token encoder's stages: elmo_fast::char_cnn, elmo_fast::highway and
// elmo_fast::dense (the projection). Semantics are elmo_fast.reference.char_cnn_ref / highway_ref and
// ``x @ weight + bias``.
//
// Every product runs on packed panels (packed_gemm.h), whose result for one row does not depend on
// the other rows of the call: a token's embedding is bit-identical whether it is computed alone, in
// a batch, or once for all its repeats, which is what makes the word-type cache exact. highway and
// dense also take the reduced-precision layouts of lowp_gemm.h (bf16 pairs, or uint8 quads with their
// scales): then the layer's input rows are rounded to bf16 or quantised per row once per call (still
// per row, so still row-exact) and multiplied in that precision; char_cnn stays float32.
//
// char_cnn. A token's 50 slots end in a run of one repeated id (padding 261, or 0 for a padding
// token), and every convolution window that lies inside that run gives the same vector. So per token
// only the windows starting at s = 0 .. n (n = where the run starts) are computed; the one at s = n
// stands for all the others. Rows are processed in chunks, one chunk per task: gather the character
// embeddings straight into an im2col buffer [windows, wmax * d], one GEMM against all filter widths
// at once (narrower filters are zero-padded to wmax, ~16% extra FLOPs on the original model), then max
// over each filter's valid windows, bias and activation.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "lowp_gemm.h"
#include "vec.h"

namespace elmo_fast::cpu {
namespace {

constexpr int64_t kMaxChunkRows = 32;
constexpr int64_t kRowBlock = 192;
constexpr int64_t kColBlock = 128;

// First slot of the row's trailing run of equal ids (0 when the whole row is one id).
int64_t trailing_run_start(const int64_t* ids, int64_t slots) {
  int64_t n = slots - 1;
  while (n > 0 && ids[n - 1] == ids[slots - 1]) {
    --n;
  }
  return n;
}

struct FilterGroup {
  int64_t width;
  int64_t first;
  int64_t count;
};

struct MaxArgs {
  const float* y;  // [last_start + 1, F] windows of this row, row stride ld
  int64_t ld;
  int64_t last_start;  // the row's last computed window start
  int64_t slots;
  const FilterGroup* groups;
  int64_t n_groups;
  const float* bias;
  bool tanh_act;
  float* out;
};

ELMO_FAST_ISA_CLONES void max_bias_act(const MaxArgs& a) {
  for (int64_t gi = 0; gi < a.n_groups; ++gi) {
    const FilterGroup& g = a.groups[gi];
    // Windows wider than the rest of the row do not exist for this width.
    const int64_t used = std::min(a.last_start, a.slots - g.width) + 1;
    for (int64_t f = g.first; f < g.first + g.count; f += kLanes) {
      const int64_t n = std::min(kLanes, g.first + g.count - f);
      auto load = [&](const float* p) { return n == kLanes ? vload(p) : vload_n(p, n); };
      vfloat best = load(a.y + f);
      for (int64_t s = 1; s < used; ++s) {
        best = vmax(best, load(a.y + s * a.ld + f));
      }
      vfloat v = best + load(a.bias + f);
      v = a.tanh_act ? vtanh(v) : vrelu(v);
      if (n == kLanes) {
        vstore(a.out + f, v);
      } else {
        vstore_n(a.out + f, v, n);
      }
    }
  }
}

// One group per conv weight (its width, first filter and count), after checking the weights.
std::vector<FilterGroup> filter_groups(at::TensorList conv_weights, at::TensorList conv_biases, int64_t dim, int64_t slots) {
  std::vector<FilterGroup> groups;
  int64_t filters = 0;
  for (size_t i = 0; i < conv_weights.size(); ++i) {
    const at::Tensor& w = conv_weights[i];
    TORCH_CHECK(w.dim() == 3 && w.size(1) == dim && w.scalar_type() == at::kFloat, "char_cnn: conv weight ", i, " must be float32 (n, ", dim, ", w), got ", w.sizes());
    TORCH_CHECK(w.size(2) >= 1 && w.size(2) <= slots, "char_cnn: filter width ", w.size(2), " does not fit ", slots, " slots");
    TORCH_CHECK(conv_biases[i].numel() == w.size(0), "char_cnn: conv bias ", i, " must have ", w.size(0), " values");
    groups.push_back({w.size(2), filters, w.size(0)});
    filters += w.size(0);
  }
  return groups;
}

// im2col for rows r0 .. r1: window (r, s) holds the embeddings of slots s .. s + wmax - 1 (zero past the end).
void fill_windows(const int64_t* p_ids, int64_t slots, int64_t r0, int64_t r1, const int64_t* last_start,
                  const float* p_embed, int64_t dim, int64_t wmax, float* cols) {
  const int64_t k = wmax * dim;
  int64_t windows = 0;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t* row = p_ids + r * slots;
    for (int64_t s = 0; s <= last_start[r - r0]; ++s, ++windows) {
      float* dst = cols + windows * k;
      for (int64_t j = 0; j < wmax; ++j) {
        if (s + j < slots) {
          std::memcpy(dst + j * dim, p_embed + row[s + j] * dim, sizeof(float) * dim);
        } else {
          std::memset(dst + j * dim, 0, sizeof(float) * dim);
        }
      }
    }
  }
}

at::Tensor char_cnn_cpu(
    const at::Tensor& char_ids,
    const at::Tensor& char_embed,
    at::TensorList conv_weights,
    at::TensorList conv_biases,
    c10::string_view activation,
    const std::optional<at::Tensor>& filters_packed) {
  TORCH_CHECK(char_ids.dim() == 2, "char_cnn: char_ids must be (N, slots), got ", char_ids.sizes());
  TORCH_CHECK(char_embed.dim() == 2 && char_embed.scalar_type() == at::kFloat, "char_cnn: char_embed must be float32 (V, d)");
  TORCH_CHECK(activation == "relu" || activation == "tanh", "char_cnn: activation must be 'relu' or 'tanh', got '", std::string(activation), "'");
  TORCH_CHECK(!conv_weights.empty() && conv_weights.size() == conv_biases.size(), "char_cnn: need one bias per conv weight");
  const int64_t rows = char_ids.size(0), slots = char_ids.size(1);
  const int64_t vocab = char_embed.size(0), dim = char_embed.size(1);

  const std::vector<FilterGroup> groups = filter_groups(conv_weights, conv_biases, dim, slots);
  int64_t filters = 0, wmax = 0;
  for (const FilterGroup& g : groups) {
    filters += g.count;
    wmax = std::max(wmax, g.width);
  }
  const auto opts = char_embed.options();
  at::Tensor out = at::empty({rows, filters}, opts);
  if (rows == 0) {
    return out;
  }
  const at::Tensor ids = char_ids.to(at::kLong).contiguous();
  TORCH_CHECK(ids.min().item<int64_t>() >= 0 && ids.max().item<int64_t>() < vocab, "char_cnn: character ids must lie in [0, ", vocab, ")");

  // All filters as one [wmax * d, F] matrix: row j * d + c of filter f is weight[f, c, j], zero for
  // j >= width, packed (`filters_packed`: the caller's, made once per weights; else here, per call).
  at::Tensor b_all = at::empty({filters}, opts);
  at::Tensor w_all = filters_packed ? at::Tensor() : at::zeros({wmax * dim, filters}, opts);
  for (size_t i = 0; i < groups.size(); ++i) {
    const FilterGroup& g = groups[i];
    if (!filters_packed) {
      // [n, d, w] -> [w, d, n]
      at::Tensor w = conv_weights[i].permute({2, 1, 0}).reshape({g.width * dim, g.count});
      w_all.narrow(0, 0, g.width * dim).narrow(1, g.first, g.count).copy_(w);
    }
    b_all.narrow(0, g.first, g.count).copy_(conv_biases[i].reshape({g.count}));
  }
  if (filters_packed) {
    check_packed(*filters_packed, std::nullopt, "char_cnn: filters_packed", {}, wmax * dim, filters);
    TORCH_CHECK(filters_packed->scalar_type() == at::kFloat, "char_cnn: filters_packed must be float32 panels, got ", filters_packed->scalar_type());
  }
  const at::Tensor embed = char_embed.contiguous();
  const at::Tensor w_packed = filters_packed ? filters_packed->contiguous() : pack_panels(w_all);
  const float* p_embed = embed.data_ptr<float>();
  const float* p_w = w_packed.data_ptr<float>();
  const float* p_b = b_all.data_ptr<float>();
  const int64_t* p_ids = ids.data_ptr<int64_t>();
  float* p_out = out.data_ptr<float>();
  const int64_t k = wmax * dim;
  const bool tanh_act = activation == "tanh";

  const int64_t tasks = 4 * at::get_num_threads();
  const int64_t chunk = std::clamp<int64_t>((rows + tasks - 1) / tasks, 1, kMaxChunkRows);
  const int64_t filters_p = round_up(filters, kPanel);
  at::parallel_for(0, (rows + chunk - 1) / chunk, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> last_start(chunk);
    std::vector<float> cols, y;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t r0 = task * chunk, r1 = std::min(rows, r0 + chunk);
      int64_t windows = 0;
      for (int64_t r = r0; r < r1; ++r) {
        last_start[r - r0] = trailing_run_start(p_ids + r * slots, slots);
        windows += last_start[r - r0] + 1;
      }
      cols.resize(std::max<size_t>(cols.size(), windows * k));
      y.resize(std::max<size_t>(y.size(), windows * filters_p));
      fill_windows(p_ids, slots, r0, r1, last_start.data(), p_embed, dim, wmax, cols.data());
      packed_gemm(cols.data(), k, windows, p_w, filters_p / kPanel, k, y.data(), filters_p);
      int64_t first = 0;
      for (int64_t r = r0; r < r1; ++r) {
        MaxArgs args{};
        args.y = y.data() + first * filters_p;
        args.last_start = last_start[r - r0];
        args.slots = slots;
        args.groups = groups.data();
        args.n_groups = static_cast<int64_t>(groups.size());
        args.ld = filters_p;
        args.bias = p_b;
        args.tanh_act = tanh_act;
        args.out = p_out + r * filters;
        max_bias_act(args);
        first += args.last_start + 1;
      }
    }
  });
  return out;
}

struct HighwayArgs {
  const float* t;  // [rows, tile_ld] x @ w_transform
  const float* g;  // [rows, tile_ld] x @ w_carry
  int64_t tile_ld;
  const float* x;  // input rows, row stride ld
  float* y;        // output rows, row stride ld
  int64_t ld;
  const float* b_t;
  const float* b_g;
  int64_t rows;
  int64_t width;
};

ELMO_FAST_ISA_CLONES void highway_epilogue(const HighwayArgs& a) {
  for (int64_t r = 0; r < a.rows; ++r) {
    for (int64_t k = 0; k < a.width; k += kLanes) {
      const int64_t n = std::min(kLanes, a.width - k);
      auto load = [&](const float* p) { return n == kLanes ? vload(p) : vload_n(p, n); };
      vfloat transform = vrelu(load(a.t + r * a.tile_ld + k) + load(a.b_t + k));
      vfloat gate = vsigmoid(load(a.g + r * a.tile_ld + k) + load(a.b_g + k));
      vfloat v = gate * transform + (1.0f - gate) * load(a.x + r * a.ld + k);
      if (n == kLanes) {
        vstore(a.y + r * a.ld + k, v);
      } else {
        vstore_n(a.y + r * a.ld + k, v, n);
      }
    }
  }
}

ELMO_FAST_ISA_CLONES void bias_epilogue(const float* tile, int64_t tile_ld, const float* bias, float* y, int64_t ld, int64_t rows, int64_t width) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < width; k += kLanes) {
      const int64_t n = std::min(kLanes, width - k);
      if (n == kLanes) {
        vstore(y + r * ld + k, vload(tile + r * tile_ld + k) + vload(bias + k));
      } else {
        vstore_n(y + r * ld + k, vload_n(tile + r * tile_ld + k, n) + vload_n(bias + k, n), n);
      }
    }
  }
}

// Runs body(r0, nr, c0, nc, tile) over [kRowBlock, kColBlock] blocks of a [rows, cols] output in
// parallel; `tile` holds `tiles` scratch [kRowBlock, kColBlock] buffers for the task.
template <typename Body>
void for_each_block(int64_t rows, int64_t cols, int64_t tiles, const Body& body) {
  const int64_t n_rb = (rows + kRowBlock - 1) / kRowBlock;
  const int64_t n_cb = (cols + kColBlock - 1) / kColBlock;
  at::parallel_for(0, n_rb * n_cb, 1, [&](int64_t begin, int64_t end) {
    std::unique_ptr<float[]> tile(new float[tiles * kRowBlock * kColBlock]);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t r0 = item / n_cb * kRowBlock, c0 = item % n_cb * kColBlock;
      body(r0, std::min(kRowBlock, rows - r0), c0, std::min(kColBlock, cols - c0), tile.get());
    }
  });
}

// The packed operand for `weight` [k, n]: the caller's (any layout of pack_panels, or the bf16 pairs
// and uint8 quads of lowp_gemm.h with their scales), or float32 panels packed here for this call.
at::Tensor packed_or_pack(const std::optional<at::Tensor>& packed, const std::optional<at::Tensor>& scale, const at::Tensor& weight,
                          const char* name) {
  at::Tensor p = packed ? packed->contiguous() : pack_panels(weight);
  check_packed(p, scale, name, {}, weight.size(0), weight.size(1));
  return p;
}

// Rows per task when converting a layer's input for bf16 or int8 products (once per call, in parallel).
constexpr int64_t kConvertGrain = 64;

at::Tensor highway_cpu(
    const at::Tensor& x,
    const at::Tensor& w_transform,
    const at::Tensor& b_transform,
    const at::Tensor& w_carry,
    const at::Tensor& b_carry,
    const std::optional<at::Tensor>& w_transform_packed,
    const std::optional<at::Tensor>& w_carry_packed,
    const std::optional<at::Tensor>& w_transform_scale,
    const std::optional<at::Tensor>& w_carry_scale) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat, "highway: x must be float32 (N, F), got ", x.sizes(), " ", x.scalar_type());
  const int64_t rows = x.size(0), width = x.size(1);
  for (const at::Tensor* w : {&w_transform, &w_carry}) {
    TORCH_CHECK(w->scalar_type() == at::kFloat && w->sizes() == at::IntArrayRef({width, width}), "highway: weights must be float32 (", width, ", ", width, "), got ", w->sizes());
  }
  for (const at::Tensor* b : {&b_transform, &b_carry}) {
    TORCH_CHECK(b->scalar_type() == at::kFloat && b->numel() == width, "highway: biases must be float32 with ", width, " values");
  }
  const at::Tensor wt = packed_or_pack(w_transform_packed, w_transform_scale, w_transform, "highway: w_transform_packed");
  const at::Tensor wc = packed_or_pack(w_carry_packed, w_carry_scale, w_carry, "highway: w_carry_packed");
  const Panels pt = Panels::of(wt, w_transform_scale, 0), pc = Panels::of(wc, w_carry_scale, 0);
  TORCH_CHECK(pt.type == pc.type && pt.group == pc.group, "highway: w_transform_packed and w_carry_packed must have the same layout, got ",
              wt.scalar_type(), " and ", wc.scalar_type(), " panels");
  at::Tensor y = at::empty({rows, width}, x.options());
  if (rows == 0) {
    return y;
  }
  const at::Tensor xc = x.contiguous(), bt = b_transform.contiguous(), bc = b_carry.contiguous();
  const float* p_x = xc.data_ptr<float>();
  float* p_y = y.data_ptr<float>();
  // Both products read the same rows: converted once for bf16 or int8 products.
  RowBuffer buffer;
  const Rows a = buffer.convert(p_x, width, rows, width, pt.group, kConvertGrain);
  for_each_block(rows, width, 2, [&](int64_t r0, int64_t nr, int64_t c0, int64_t nc, float* tile) {
    const int64_t nc_p = round_up(nc, kPanel);
    float* t = tile;
    float* g = tile + nr * nc_p;
    packed_gemm(a.from(r0), nr, pt.panel(c0 / kPanel, width), nc_p / kPanel, width, t, nc_p);
    packed_gemm(a.from(r0), nr, pc.panel(c0 / kPanel, width), nc_p / kPanel, width, g, nc_p);
    HighwayArgs args{t, g, nc_p, p_x + r0 * width + c0, p_y + r0 * width + c0, width, bt.data_ptr<float>() + c0, bc.data_ptr<float>() + c0, nr, nc};
    highway_epilogue(args);
  });
  return y;
}

at::Tensor dense_cpu(
    const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, const std::optional<at::Tensor>& weight_packed,
    const std::optional<at::Tensor>& weight_scale) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat, "dense: x must be float32 (N, K), got ", x.sizes(), " ", x.scalar_type());
  TORCH_CHECK(weight.dim() == 2 && weight.size(0) == x.size(1) && weight.scalar_type() == at::kFloat, "dense: weight must be float32 (", x.size(1), ", M), got ", weight.sizes());
  TORCH_CHECK(bias.numel() == weight.size(1) && bias.scalar_type() == at::kFloat, "dense: bias must be float32 with ", weight.size(1), " values");
  const int64_t rows = x.size(0), k = x.size(1), cols = weight.size(1);
  // Any packed layout (fp32, bf16 or int8 weights; bf16 or int8 products, lowp_gemm.h).
  const at::Tensor w = packed_or_pack(weight_packed, weight_scale, weight, "dense: weight_packed");
  at::Tensor y = at::empty({rows, cols}, x.options());
  if (rows == 0) {
    return y;
  }
  const at::Tensor xc = x.contiguous(), b = bias.contiguous();
  const Panels panels = Panels::of(w, weight_scale, 0);
  const float* p_x = xc.data_ptr<float>();
  float* p_y = y.data_ptr<float>();
  RowBuffer buffer;
  const Rows a = buffer.convert(p_x, k, rows, k, panels.group, kConvertGrain);
  for_each_block(rows, cols, 1, [&](int64_t r0, int64_t nr, int64_t c0, int64_t nc, float* tile) {
    const int64_t nc_p = round_up(nc, kPanel);
    packed_gemm(a.from(r0), nr, panels.panel(c0 / kPanel, k), nc_p / kPanel, k, tile, nc_p);
    bias_epilogue(tile, nc_p, b.data_ptr<float>() + c0, p_y + r0 * cols + c0, cols, nr, nc);
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(elmo_fast, CPU, m) {
  m.impl("char_cnn", &char_cnn_cpu);
  m.impl("highway", &highway_cpu);
  m.impl("dense", &dense_cpu);
  m.impl("pack_panels", &pack_panels);
}

}  // namespace elmo_fast::cpu
