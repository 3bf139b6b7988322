// elmo_fast::cpu_kernels: which CPU micro-kernel runs each kind of product (lowp_gemm.h), for
// `elmo-fast env`. The op takes no tensor, so it is registered for every dispatch key (CatchAll).
#include <torch/library.h>

#include "lowp_gemm.h"

namespace elmo_fast::cpu {

// How the lstmp kernel shares a call between threads (lstmp.cpp).
std::string lstmp_schedule_report();

namespace {

std::vector<std::string> cpu_kernels() {
  std::vector<std::string> lines = cpu_kernel_report();
  lines.push_back(lstmp_schedule_report());
  return lines;
}

}  // namespace

TORCH_LIBRARY_IMPL(elmo_fast, CatchAll, m) {
  m.impl("cpu_kernels", &cpu_kernels);
}

}  // namespace elmo_fast::cpu
