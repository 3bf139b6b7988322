// CPU forward of elmo_fast::lstmp: one LSTM-with-projection layer, D directions, over a padded batch.
// Semantics are elmo_fast.reference.lstmp_ref's; the layouts are documented there.
//
// Rows are sorted by decreasing length, so the rows still running at step s are the prefix
// [0, active[s]) and every per-step operand is a dense block. All products run on weights pre-packed
// by elmo_fast::pack_panels (see packed_gemm.h). The input GEMM runs for windows of a few steps
// (kWindowBytes) ahead of their steps; each step then runs two phases:
//   gates:      per (direction, block of kCellBlock cells), the four gates' [rows, P] x [P, cells]
//               products into a task-local tile, then i/j/f/o, the cell update, clipping and
//               m = sigmoid(o) * tanh(c), fused, while the tile is in cache;
//   projection: per (direction, block of kProjBlock columns), [rows, C] x [C, cols], then clipping,
//               the state update, the residual and the scatter to the padded output, fused.
// Threads (choose_plan): with few rows and large weights a step is bound by reading the weights, so
// the directions run in turn and every step's phases are split over all threads in fixed shares
// (cooperative: each core keeps its share of one direction's weights in cache across the steps;
// two barriers per step). Otherwise, with no more threads than directions, each direction is one
// task that runs all its steps, so the directions never wait for each other; with more threads,
// every phase of every step is split over all of them.
//
// NOTE: no BLAS call happens in the steps. PyTorch turns MKL's dynamic threading off, so every MKL
// GEMM forks and joins its own OpenMP team (a nested one inside a task): with the input GEMM as
// per-block MKL calls, one [2, 1, 22, 512] layer of the original model took 4.2 s with 2 threads
// instead of 0.13 s with 1 (70% of the time in libgomp's spin-wait, 1024 thread hand-offs per call)
// while other jobs kept the cores busy. Per-step barriers are why threads <= D gets one task per
// direction. Measured on the 2-core machine, quiet: a [2, 32, 22, 512] layer takes 0.32 s with 2
// threads (0.65 s with 1), [2, 1, 22, 512] 0.067 s (28 GB/s of weights: the machine's read
// bandwidth is 30 GB/s).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <numeric>
#include <optional>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "../ops.h"
#include "lowp_gemm.h"
#include "vec.h"

namespace elmo_fast::cpu {
namespace {

// 128 cells -> four [32, 128] fp32 gate tiles = 64 KiB per task. Both are multiples of kPanel.
constexpr int64_t kCellBlock = 128;
constexpr int64_t kProjBlock = 128;
// Bytes of input GEMM results held at once (at least one step's rows), e.g. 64 positions of the
// original model. NOTE: with 512 positions (64 MiB) every call paid ~60 ms of page faults for the
// fresh mmap (10% of a batch of 32); this size is reused by malloc, and each window is consumed
// from L3 soon after it is written.
constexpr int64_t kWindowBytes = 8 << 20;
// NOTE: 96 rows of a 512-wide input (192 KiB) measured best (95 GFLOP/s on one core vs 87 unblocked).
constexpr int64_t kInputRowBlock = 96;

// The step structure of a batch: rows sorted by decreasing length (stable), and for each step how
// many rows are still running and where that step's rows start in the packed position order.
struct Schedule {
  std::vector<int64_t> perm;
  std::vector<int64_t> length;
  std::vector<int64_t> active;
  std::vector<int64_t> offset;
  int64_t total = 0;
};

Schedule make_schedule(const at::Tensor& lengths, int64_t width) {
  const at::Tensor lens = lengths.to(at::kCPU, at::kLong).contiguous();
  const int64_t batch = lens.numel();
  const int64_t* p_len = lens.data_ptr<int64_t>();
  Schedule sch;
  sch.perm.resize(batch);
  std::iota(sch.perm.begin(), sch.perm.end(), 0);
  for (int64_t b = 0; b < batch; ++b) {
    TORCH_CHECK(p_len[b] >= 0 && p_len[b] <= width, "lstmp: lengths[", b, "] = ", p_len[b], " is outside [0, ", width, "]");
  }
  std::stable_sort(sch.perm.begin(), sch.perm.end(), [&](int64_t a, int64_t b) { return p_len[a] > p_len[b]; });
  sch.length.resize(batch);
  for (int64_t r = 0; r < batch; ++r) {
    sch.length[r] = p_len[sch.perm[r]];
  }
  const int64_t steps = batch ? sch.length[0] : 0;
  sch.active.assign(steps, 0);
  sch.offset.assign(steps + 1, 0);
  for (int64_t r = 0; r < batch; ++r) {
    for (int64_t s = 0; s < sch.length[r]; ++s) {
      sch.active[s] += 1;
    }
  }
  for (int64_t s = 0; s < steps; ++s) {
    sch.offset[s + 1] = sch.offset[s] + sch.active[s];
  }
  sch.total = sch.offset[steps];
  return sch;
}

// Position read at step s by sorted row r: direction 0 reads left to right, direction 1 starts at
// the row's own last position.
inline int64_t position(int64_t dir, int64_t step, int64_t len) {
  return dir == 0 ? step : len - 1 - step;
}

struct GateArgs {
  // [4][rows, tile_ld] recurrent GEMM results, then the matching rows of each gate's input GEMM block.
  const float* tile;
  int64_t tile_ld;
  const float* gx[4];
  int64_t gx_ld;
  const float* bias;  // [4C] for this direction, already offset to the block's first cell
  int64_t cell;       // C: distance between gate blocks in `bias`
  float* c;           // cell state rows, row stride ld
  float* m;           // sigmoid(o) * tanh(c) rows, row stride ld
  int64_t ld;
  int64_t rows;
  int64_t width;
  bool clip;
  float clip_value;
};

// Cells [k, k + n) of row r, n <= the lanes of V (fewer: a tail, through a zero-padded buffer).
template <typename V>
ELMO_FAST_INLINE void gate_cells(const GateArgs& a, int64_t r, int64_t k, int64_t n) {
  constexpr int64_t lanes = sizeof(V) / sizeof(float);
  auto load = [&](const float* p) {
    V v;
    if (n == lanes) {
      std::memcpy(&v, p + k, sizeof(v));
    } else {
      float buf[lanes] = {};
      std::memcpy(buf, p + k, sizeof(float) * n);
      std::memcpy(&v, buf, sizeof(v));
    }
    return v;
  };
  auto store = [&](float* p, V v) {
    if (n == lanes) {
      std::memcpy(p + k, &v, sizeof(v));
    } else {
      float buf[lanes];
      std::memcpy(buf, &v, sizeof(v));
      std::memcpy(p + k, buf, sizeof(float) * n);
    }
  };
  const int64_t plane = a.rows * a.tile_ld;
  const float* t = a.tile + r * a.tile_ld;
  float* c = a.c + r * a.ld;
  V zi = load(t) + load(a.gx[0] + r * a.gx_ld) + load(a.bias);
  V zj = load(t + plane) + load(a.gx[1] + r * a.gx_ld) + load(a.bias + a.cell);
  V zf = load(t + 2 * plane) + load(a.gx[2] + r * a.gx_ld) + load(a.bias + 2 * a.cell);
  V zo = load(t + 3 * plane) + load(a.gx[3] + r * a.gx_ld) + load(a.bias + 3 * a.cell);
  V c_new = vsigmoid(zf) * load(c) + vsigmoid(zi) * vtanh(zj);
  if (a.clip) {
    c_new = vclamp(c_new, -a.clip_value, a.clip_value);
  }
  store(c, c_new);
  store(a.m + r * a.ld, vsigmoid(zo) * vtanh(c_new));
}

ELMO_FAST_ISA_CLONES void gates_epilogue(const GateArgs& a) {
  for (int64_t r = 0; r < a.rows; ++r) {
    for (int64_t k = 0; k < a.width; k += kLanes) {
      gate_cells<vfloat>(a, r, k, std::min(kLanes, a.width - k));
    }
  }
}

#ifdef ELMO_FAST_HAVE_AVX2_KERNEL
// The same with 16 lanes where the CPU has AVX-512 (the gate nonlinearities were a sixth of the
// int8 batch-32 time with 8 lanes). No FMA is enabled here, as in the clones above, so every
// cell gets the same bits as there (setup.py compiles with -ffp-contract=off: AVX-512F has its own FMA
// instructions; tests/test_cpp_backend.py compares the two with ELMO_FAST_DISABLE_AVX512).
__attribute__((target("avx512f,no-fma"))) void gates_epilogue_avx512(const GateArgs& a) {
  for (int64_t r = 0; r < a.rows; ++r) {
    int64_t k = 0;
    for (; k + 16 <= a.width; k += 16) {
      gate_cells<vfloat16>(a, r, k, 16);
    }
    for (; k < a.width; k += kLanes) {
      gate_cells<vfloat>(a, r, k, std::min(kLanes, a.width - k));
    }
  }
}
#endif

void run_gates_epilogue(const GateArgs& a) {
#ifdef ELMO_FAST_HAVE_AVX2_KERNEL
  if (cpu_has_avx512()) {
    gates_epilogue_avx512(a);
    return;
  }
#endif
  gates_epilogue(a);
}

struct ProjArgs {
  const float* tile;      // [rows, tile_ld]
  int64_t tile_ld;
  float* h;               // state rows, row stride ld_h
  int64_t ld_h;
  float* const* out;      // per row: destination in the padded output
  const float* const* x;  // per row: residual input, or null
  int64_t rows;
  int64_t width;
  bool clip;
  float clip_value;
};

ELMO_FAST_ISA_CLONES void proj_epilogue(const ProjArgs& a) {
  for (int64_t r = 0; r < a.rows; ++r) {
    const float* t = a.tile + r * a.tile_ld;
    float* h = a.h + r * a.ld_h;
    float* out = a.out[r];
    const float* x = a.x ? a.x[r] : nullptr;
    for (int64_t k = 0; k < a.width; k += kLanes) {
      const int64_t n = std::min(kLanes, a.width - k);
      vfloat v = n == kLanes ? vload(t + k) : vload_n(t + k, n);
      if (a.clip) {
        v = vclamp(v, -a.clip_value, a.clip_value);
      }
      vfloat o = x ? v + (n == kLanes ? vload(x + k) : vload_n(x + k, n)) : v;
      if (n == kLanes) {
        vstore(h + k, v);
        vstore(out + k, o);
      } else {
        vstore_n(h + k, v, n);
        vstore_n(out + k, o, n);
      }
    }
  }
}

void check_weight(const at::Tensor& t, const char* name, at::IntArrayRef shape) {
  TORCH_CHECK(t.scalar_type() == at::kFloat, "lstmp: ", name, " must be float32, got ", t.scalar_type());
  TORCH_CHECK(t.sizes() == shape, "lstmp: ", name, " has shape ", t.sizes(), ", expected ", shape);
}

// Everything one call works on, as raw pointers into tensors that lstmp_cpu keeps alive, and the
// three kinds of work items. Item ranges are contiguous per direction: input GEMM items are
// (d, gate, cell block), gate items (d, cell block), projection items (d, column block).
struct Layer {
  const Schedule& sch;
  int64_t dirs, batch, width, in_dim, cell, proj, cell_p, proj_p;
  int64_t cb, n_cb, pb, n_pb, cap;
  const float* xp;  // [D, N, Pin] inputs in step order
  Panels ih;        // packed w_ih
  const float* bias;
  Panels hh;        // packed w_hh
  Panels pr;        // packed w_proj
  float* gx;        // per (d, gate, cell block): [cap, cells] input GEMM of the current window
  float* h;         // [D, B, P] state, sorted rows
  float* c;         // [D, B, C]
  float* m;         // [D, B, C] sigmoid(o) * tanh(c) of the current step
  float* out;       // [D, B, T, P]
  bool residual;
  std::optional<float> cell_clip, proj_clip;

  int64_t gates() const { return 4 * cell; }

  float* gx_block(int64_t d, int64_t g, int64_t kb) const { return gx + ((d * 4 + g) * n_cb + kb) * cap * cb; }

  // The i-th item of [begin, end) at step s: odd steps walk the weights backwards, so a step starts
  // on the panels the previous one touched last, which are still in L3.
  static int64_t sweep(int64_t s, int64_t begin, int64_t end, int64_t i) { return s % 2 ? begin + end - 1 - i : i; }

  // The last step (exclusive) of the input-GEMM window that starts at step s.
  int64_t window_end(int64_t s) const {
    const int64_t steps = static_cast<int64_t>(sch.active.size());
    int64_t e = s + 1;
    while (e < steps && sch.offset[e + 1] - sch.offset[s] <= cap) {
      ++e;
    }
    return e;
  }

  // Activation rows go through a RowBuffer (bf16 or int8 products: converted once per call and
  // direction, not once per block of columns).
  void input_gemm(int64_t begin, int64_t end, int64_t first, int64_t rows) const {
    thread_local RowBuffer buffer;
    Rows a;
    for (int64_t item = begin, converted = -1; item < end; ++item) {
      const int64_t d = item / (4 * n_cb), g = item / n_cb % 4, kb = item % n_cb;
      const int64_t k0 = kb * cb, kw_p = std::min(cb, cell_p - k0);
      const Panels panels = ih.panel((d * 4 + g) * (cell_p / kPanel) + k0 / kPanel, in_dim);
      if (d != converted) {
        a = buffer.convert(xp + (d * sch.total + first) * in_dim, in_dim, rows, in_dim, ih.group);
        converted = d;
      }
      // Row blocks keep the block of inputs in L2 while the panels stream past.
      for (int64_t r0 = 0; r0 < rows; r0 += kInputRowBlock) {
        packed_gemm(a.from(r0), std::min(kInputRowBlock, rows - r0), panels, kw_p / kPanel, in_dim, gx_block(d, g, kb) + r0 * kw_p, kw_p);
      }
    }
  }

  void gate_items(int64_t s, int64_t window_first, int64_t begin, int64_t end) const {
    const int64_t rows = sch.active[s];
    const int64_t row0 = sch.offset[s] - window_first;
    std::unique_ptr<float[]> tile(new float[4 * rows * cb]);
    thread_local RowBuffer buffer;
    Rows a;
    for (int64_t i = begin, converted = -1; i < end; ++i) {
      const int64_t item = sweep(s, begin, end, i);
      const int64_t d = item / n_cb, kb = item % n_cb;
      const int64_t k0 = kb * cb, kw = std::min(cb, cell - k0), kw_p = std::min(cb, cell_p - k0);
      if (d != converted) {
        a = buffer.convert(h + d * batch * proj, proj, rows, proj, hh.group);
        converted = d;
      }
      for (int64_t g = 0; g < 4; ++g) {
        const Panels panels = hh.panel((d * 4 + g) * (cell_p / kPanel) + k0 / kPanel, proj);
        packed_gemm(a, rows, panels, kw_p / kPanel, proj, tile.get() + g * rows * kw_p, kw_p);
      }
      GateArgs args{};
      args.tile = tile.get();
      args.tile_ld = kw_p;
      for (int64_t g = 0; g < 4; ++g) {
        args.gx[g] = gx_block(d, g, kb) + row0 * kw_p;
      }
      args.gx_ld = kw_p;
      args.bias = bias + d * gates() + k0;
      args.cell = cell;
      args.c = c + d * batch * cell + k0;
      args.m = m + d * batch * cell + k0;
      args.ld = cell;
      args.rows = rows;
      args.width = kw;
      args.clip = cell_clip.has_value();
      args.clip_value = cell_clip.value_or(0.0f);
      run_gates_epilogue(args);
    }
  }

  void projection_items(int64_t s, int64_t begin, int64_t end) const {
    const int64_t rows = sch.active[s];
    const int64_t row0 = sch.offset[s];
    std::unique_ptr<float[]> tile(new float[rows * pb]);
    std::vector<float*> dst(rows);
    std::vector<const float*> res(residual ? rows : 0);
    thread_local RowBuffer buffer;
    Rows a;
    for (int64_t i = begin, converted = -1; i < end; ++i) {
      const int64_t item = sweep(s, begin, end, i);
      const int64_t d = item / n_pb, p0 = item % n_pb * pb;
      const int64_t pw = std::min(pb, proj - p0), pw_p = std::min(pb, proj_p - p0);
      const Panels panels = pr.panel(d * (proj_p / kPanel) + p0 / kPanel, cell);
      if (d != converted) {
        a = buffer.convert(m + d * batch * cell, cell, rows, cell, pr.group);
        converted = d;
      }
      packed_gemm(a, rows, panels, pw_p / kPanel, cell, tile.get(), pw_p);
      for (int64_t r = 0; r < rows; ++r) {
        dst[r] = out + ((d * batch + sch.perm[r]) * width + position(d, s, sch.length[r])) * proj + p0;
        if (residual) {
          res[r] = xp + (d * sch.total + row0 + r) * in_dim + p0;
        }
      }
      ProjArgs args{};
      args.tile = tile.get();
      args.tile_ld = pw_p;
      args.h = h + d * batch * proj + p0;
      args.ld_h = proj;
      args.out = dst.data();
      args.x = residual ? res.data() : nullptr;
      args.rows = rows;
      args.width = pw;
      args.clip = proj_clip.has_value();
      args.clip_value = proj_clip.value_or(0.0f);
      proj_epilogue(args);
    }
  }

  // All steps of directions [d_begin, d_end) on the calling thread.
  void run_directions(int64_t d_begin, int64_t d_end) const {
    const int64_t steps = static_cast<int64_t>(sch.active.size());
    for (int64_t d = d_begin; d < d_end; ++d) {
      int64_t window_first = 0;
      for (int64_t s = 0; s < steps; ++s) {
        if (s == 0 || sch.offset[s + 1] - window_first > cap) {
          window_first = sch.offset[s];
          input_gemm(d * 4 * n_cb, (d + 1) * 4 * n_cb, window_first, sch.offset[window_end(s)] - window_first);
        }
        gate_items(s, window_first, d * n_cb, (d + 1) * n_cb);
        projection_items(s, d * n_pb, (d + 1) * n_pb);
      }
    }
  }

  // The directions one after the other, each step's phases split over a team of `threads` threads
  // (this one is `tid`) in fixed shares, a barrier after each phase. A thread reads the same share
  // of one direction's weights at every step, so with few rows (a step bound by reading weights)
  // that share stays in cache across the steps: 1/threads of one direction's recurrent and
  // projection weights per core instead of a whole direction's.
  // `guard(work)` runs a thread's share of a phase (and keeps an exception from skipping barriers).
  template <typename Barrier, typename Guard>
  void run_cooperative(int64_t tid, int64_t threads, const Barrier& barrier, const Guard& guard) const {
    const int64_t steps = static_cast<int64_t>(sch.active.size());
    auto share = [&](int64_t first, int64_t count, auto&& body) {
      guard([&] { body(first + tid * count / threads, first + (tid + 1) * count / threads); });
    };
    for (int64_t d = 0; d < dirs; ++d) {
      int64_t window_first = 0;
      for (int64_t s = 0; s < steps; ++s) {
        if (s == 0 || sch.offset[s + 1] - window_first > cap) {
          window_first = sch.offset[s];
          const int64_t rows = sch.offset[window_end(s)] - window_first;
          share(d * 4 * n_cb, 4 * n_cb, [&](int64_t b, int64_t e) { input_gemm(b, e, window_first, rows); });
          barrier();
        }
        share(d * n_cb, n_cb, [&](int64_t b, int64_t e) { gate_items(s, window_first, b, e); });
        barrier();
        share(d * n_pb, n_pb, [&](int64_t b, int64_t e) { projection_items(s, b, e); });
        barrier();
      }
    }
  }

  // Every phase of every step split over all threads.
  void run_split() const {
    const int64_t steps = static_cast<int64_t>(sch.active.size());
    int64_t window_first = 0;
    for (int64_t s = 0; s < steps; ++s) {
      if (s == 0 || sch.offset[s + 1] - window_first > cap) {
        window_first = sch.offset[s];
        const int64_t rows = sch.offset[window_end(s)] - window_first;
        at::parallel_for(0, dirs * 4 * n_cb, 1, [&](int64_t b, int64_t e) { input_gemm(b, e, window_first, rows); });
      }
      at::parallel_for(0, dirs * n_cb, 1, [&](int64_t b, int64_t e) { gate_items(s, window_first, b, e); });
      at::parallel_for(0, dirs * n_pb, 1, [&](int64_t b, int64_t e) { projection_items(s, b, e); });
    }
  }
};

// How the threads share a call (see the top of this file):
//   kDirections: one task per direction, all its steps, no waiting (threads <= directions);
//   kCooperative: directions in turn, each step split over all threads, a barrier per phase; for
//     few rows, where a step reads the weights more than it computes (batch 1: the weights of one
//     direction of the original model, 20 MB in bf16, stay in cache; both directions' 40 MB did not);
//   kSplit: every phase of every step split over all threads by at::parallel_for.
// ELMO_FAST_LSTM_SCHEDULE=directions|cooperative|split overrides the choice (benchmarks, tests); every
// schedule gives the same bits (each product column is computed by the same kernel either way).
// NOTE: measured on the 2-core AMD EPYC, 2 threads (benchmarks/lstm_schedule.py,
// benchmarks/results/lstm-schedule_*.json): with the original model (one direction's recurrent and
// projection weights: 42 MB fp32, 21 MB bf16, 10.5 MB int8) cooperative/directions time was 0.59-0.82
// at batch 1, 0.83-0.91 at batch 8, 0.96-0.98 at 16, 1.00-1.02 at 32; with the small model (2.6 MB
// fp32 per direction) 1.08-1.37 at batch 1 and 1.03-1.33 at 8: barriers cost more than cache misses.
constexpr int64_t kCooperativeMaxRows = 16;
constexpr int64_t kCooperativeMinBytes = 6 << 20;

enum class ThreadPlan { kDirections, kCooperative, kSplit };

// `direction_bytes`: one direction's recurrent and projection weights as packed.
ThreadPlan choose_plan(int64_t batch, int64_t dirs, int64_t threads, int64_t direction_bytes) {
  if (const char* env = std::getenv("ELMO_FAST_LSTM_SCHEDULE")) {
    const std::string name(env);
    TORCH_CHECK(name == "directions" || name == "cooperative" || name == "split", "ELMO_FAST_LSTM_SCHEDULE must be directions, cooperative or split, got '", name, "'");
    if (threads > 1 || name == "directions") {
      return name == "directions" ? ThreadPlan::kDirections : name == "cooperative" ? ThreadPlan::kCooperative : ThreadPlan::kSplit;
    }
  }
  if (threads > 1 && batch <= kCooperativeMaxRows && direction_bytes >= kCooperativeMinBytes) {
    return ThreadPlan::kCooperative;
  }
  return threads <= dirs ? ThreadPlan::kDirections : ThreadPlan::kSplit;
}

// Layer::run_cooperative on an OpenMP team with OpenMP barriers; on one thread where OpenMP is absent
// or the call is already inside a parallel region (no barrier is then needed). An exception in one
// thread (e.g. an allocation failing) must not leave the others waiting at a barrier, nor escape the
// parallel region: every thread still reaches every barrier, the remaining work is skipped, and the
// first exception is rethrown after the region.
void run_cooperative(const Layer& layer) {
  std::exception_ptr error;
  std::atomic<bool> failed{false};
  std::mutex lock;
  auto guard = [&](const auto& work) {
    if (failed.load(std::memory_order_relaxed)) {
      return;
    }
    try {
      work();
    } catch (...) {
      std::lock_guard<std::mutex> hold(lock);
      if (!error) {
        error = std::current_exception();
      }
      failed.store(true, std::memory_order_relaxed);
    }
  };
#ifdef _OPENMP
  if (!omp_in_parallel()) {
    const int threads = at::get_num_threads();
#pragma omp parallel num_threads(threads)
    {
      const int64_t team = omp_get_num_threads();
      layer.run_cooperative(omp_get_thread_num(), team, [] {
#pragma omp barrier
      }, guard);
    }
  } else {
    layer.run_cooperative(0, 1, [] {}, guard);
  }
#else
  layer.run_cooperative(0, 1, [] {}, guard);
#endif
  if (error) {
    std::rethrow_exception(error);
  }
}

std::optional<float> clip_value(std::optional<double> clip) {
  // lstmp_ref clips only when the value is truthy: None and 0 both mean no clipping.
  if (!clip.has_value() || *clip == 0.0) {
    return std::nullopt;
  }
  return static_cast<float>(*clip);
}

// Shapes of one call: x (D, B, T, Pin), weights and state as the schema says (csrc/ops.h).
void check_lstmp_shapes(const at::Tensor& x, const at::Tensor& lengths, const at::Tensor& w_ih, const at::Tensor& w_hh,
                        const at::Tensor& bias, const at::Tensor& w_proj, const std::optional<at::Tensor>& h0,
                        const std::optional<at::Tensor>& c0, bool residual) {
  TORCH_CHECK(x.dim() == 4, "lstmp: x must be (D, B, T, Pin), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat, "lstmp: the cpp backend runs float32, got ", x.scalar_type());
  const int64_t dirs = x.size(0), batch = x.size(1), in_dim = x.size(3);
  TORCH_CHECK(w_proj.dim() == 3, "lstmp: w_proj must be (D, C, P), got ", w_proj.sizes());
  const int64_t cell = w_proj.size(1), proj = w_proj.size(2), gates = 4 * cell;
  check_weight(w_ih, "w_ih", {dirs, in_dim, gates});
  check_weight(w_hh, "w_hh", {dirs, proj, gates});
  check_weight(bias, "bias", {dirs, gates});
  check_weight(w_proj, "w_proj", {dirs, cell, proj});
  TORCH_CHECK(lengths.dim() == 1 && lengths.size(0) == batch, "lstmp: lengths must be (B,) = (", batch, "), got ", lengths.sizes());
  TORCH_CHECK(!residual || in_dim == proj, "lstmp: residual needs input width ", in_dim, " == projection width ", proj);
  if (h0) {
    check_weight(*h0, "h0", {dirs, batch, proj});
  }
  if (c0) {
    check_weight(*c0, "c0", {dirs, batch, cell});
  }
}

// Inputs in step order: xp[d, offset[s] + r] is what sorted row r reads at step s. [D, N, Pin]
at::Tensor gather_step_inputs(const at::Tensor& x, const Schedule& sch) {
  const int64_t dirs = x.size(0), batch = x.size(1), width = x.size(2), in_dim = x.size(3);
  const int64_t total = sch.total, steps = static_cast<int64_t>(sch.active.size());
  const at::Tensor xc = x.contiguous();
  const float* p_x = xc.data_ptr<float>();
  at::Tensor xp = at::empty({dirs, total, in_dim}, x.options());
  float* p_xp = xp.data_ptr<float>();
  at::parallel_for(0, steps, 1, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) {
      for (int64_t d = 0; d < dirs; ++d) {
        for (int64_t r = 0; r < sch.active[s]; ++r) {
          const int64_t src = ((d * batch + sch.perm[r]) * width + position(d, s, sch.length[r])) * in_dim;
          std::memcpy(p_xp + (d * total + sch.offset[s] + r) * in_dim, p_x + src, sizeof(float) * in_dim);
        }
      }
    }
  });
  return xp;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstmp_cpu(
    const at::Tensor& x,
    const at::Tensor& lengths,
    const at::Tensor& w_ih,
    const at::Tensor& w_hh,
    const at::Tensor& bias,
    const at::Tensor& w_proj,
    const std::optional<at::Tensor>& h0,
    const std::optional<at::Tensor>& c0,
    std::optional<double> cell_clip,
    std::optional<double> proj_clip,
    bool residual,
    const std::optional<at::Tensor>& w_ih_packed,
    const std::optional<at::Tensor>& w_hh_packed,
    const std::optional<at::Tensor>& w_proj_packed,
    const std::optional<at::Tensor>& w_ih_scale,
    const std::optional<at::Tensor>& w_hh_scale,
    const std::optional<at::Tensor>& w_proj_scale) {
  check_lstmp_shapes(x, lengths, w_ih, w_hh, bias, w_proj, h0, c0, residual);
  const int64_t dirs = x.size(0), batch = x.size(1), width = x.size(2), in_dim = x.size(3);
  const int64_t cell = w_proj.size(1), proj = w_proj.size(2);
  // Weights as 16-column panels, per gate for w_ih and w_hh ([D, 4, Cp / 16, Pin or P, 16]) and
  // [D, Pp / 16, C, 16] for w_proj. The caller normally passes them packed once; otherwise they are
  // packed here, for this call. Packed weights may be stored in bf16, or int8 with per-column scales
  // ([D, 4, Cp] for w_ih and w_hh, [D, Pp] for w_proj); the products accumulate in float32.
  auto per_gate = [&](const at::Tensor& w) { return pack_panels(w.reshape({dirs, w.size(1), 4, cell}).transpose(1, 2)); };
  at::Tensor ih_p = w_ih_packed ? *w_ih_packed : per_gate(w_ih);
  at::Tensor hh_p = w_hh_packed ? *w_hh_packed : per_gate(w_hh);
  at::Tensor pr_p = w_proj_packed ? *w_proj_packed : pack_panels(w_proj);
  check_packed(ih_p, w_ih_scale, "lstmp: w_ih_packed", {dirs, 4}, in_dim, cell);
  check_packed(hh_p, w_hh_scale, "lstmp: w_hh_packed", {dirs, 4}, proj, cell);
  check_packed(pr_p, w_proj_scale, "lstmp: w_proj_packed", {dirs}, cell, proj);
  ih_p = ih_p.contiguous();
  hh_p = hh_p.contiguous();
  pr_p = pr_p.contiguous();

  const Schedule sch = make_schedule(lengths, width);
  const int64_t total = sch.total;
  const auto opts = x.options();
  at::Tensor out = at::zeros({dirs, batch, width, proj}, opts);
  at::Tensor h_n = h0 ? h0->contiguous().clone() : at::zeros({dirs, batch, proj}, opts);
  at::Tensor c_n = c0 ? c0->contiguous().clone() : at::zeros({dirs, batch, cell}, opts);
  if (total == 0) {
    return {out, h_n, c_n};
  }
  const at::Tensor bi = bias.contiguous();
  const at::Tensor xp = gather_step_inputs(x, sch);
  const float* p_xp = xp.data_ptr<float>();

  // State in sorted row order. [D, B, P], [D, B, C]
  at::Tensor h = at::empty({dirs, batch, proj}, opts);
  at::Tensor c = at::empty({dirs, batch, cell}, opts);
  for (int64_t r = 0; r < batch; ++r) {
    h.select(1, r).copy_(h_n.select(1, sch.perm[r]));
    c.select(1, r).copy_(c_n.select(1, sch.perm[r]));
  }
  const int64_t cell_p = round_up(cell, kPanel), proj_p = round_up(proj, kPanel);
  const int64_t threads = at::get_num_threads();
  const int64_t direction_bytes = (proj * 4 * cell + cell * proj) * static_cast<int64_t>(hh_p.element_size());
  const ThreadPlan plan = choose_plan(batch, dirs, threads, direction_bytes);
  // Cooperating threads share one direction's projection columns: blocks narrow enough to give
  // each thread one (P = 512: 128 columns up to 4 threads, 16 from 32); each column's sums are the
  // same whatever the block.
  const int64_t pb = plan == ThreadPlan::kCooperative ? std::clamp(round_up((proj_p + threads - 1) / threads, kPanel), kPanel, kProjBlock)
                                                      : std::min(proj_p, kProjBlock);
  const int64_t cb = std::min(cell_p, kCellBlock);
  const int64_t n_cb = (cell_p + cb - 1) / cb, n_pb = (proj_p + pb - 1) / pb;
  const int64_t cap = std::min(total, std::max<int64_t>(kWindowBytes / (dirs * 4 * cell_p * sizeof(float)), batch));
  at::Tensor gx = at::empty({dirs, 4, n_cb, cap * cb}, opts);
  at::Tensor m = at::empty({dirs, batch, cell}, opts);
  const Layer layer{
      sch,
      dirs, batch, width, in_dim, cell, proj, cell_p, proj_p,
      cb, n_cb, pb, n_pb, cap,
      p_xp, Panels::of(ih_p, w_ih_scale, 2), bi.data_ptr<float>(), Panels::of(hh_p, w_hh_scale, 2), Panels::of(pr_p, w_proj_scale, 1),
      gx.data_ptr<float>(), h.data_ptr<float>(), c.data_ptr<float>(), m.data_ptr<float>(), out.data_ptr<float>(),
      residual, clip_value(cell_clip), clip_value(proj_clip)};
  switch (plan) {
    case ThreadPlan::kCooperative:
      run_cooperative(layer);
      break;
    case ThreadPlan::kDirections:
      at::parallel_for(0, dirs, 1, [&](int64_t begin, int64_t end) { layer.run_directions(begin, end); });
      break;
    default:
      layer.run_split();
      break;
  }

  for (int64_t r = 0; r < batch; ++r) {
    h_n.select(1, sch.perm[r]).copy_(h.select(1, r));
    c_n.select(1, sch.perm[r]).copy_(c.select(1, r));
  }
  return {out, h_n, c_n};
}

}  // namespace

std::string lstmp_schedule_report() {
  if (const char* env = std::getenv("ELMO_FAST_LSTM_SCHEDULE")) {
    return std::string("lstm threads: ") + env + " (set by ELMO_FAST_LSTM_SCHEDULE)";
  }
  return "lstm threads: cooperative (directions in turn, each step split over all threads) for <= " + std::to_string(kCooperativeMaxRows) +
         " rows and >= " + std::to_string(kCooperativeMinBytes >> 20) + " MiB of weights a direction, else one thread per direction, or every step split when threads outnumber directions (" +
         std::to_string(at::get_num_threads()) + " threads now)";
}

static_assert(std::is_same_v<decltype(lstmp_cpu), LstmpSignature>, "lstmp_cpu must match the lstmp schema (csrc/ops.h)");

TORCH_LIBRARY_IMPL(elmo_fast, CPU, m) {
  m.impl("lstmp", &lstmp_cpu);
}

}  // namespace elmo_fast::cpu
