import os
import sys
from pathlib import Path

import torch

# Without a CUDA device the Triton kernels are tested on CPU tensors under the Triton interpreter.
# Set here, before any test module imports triton, so that plain `pytest -q` runs them too;
# backend "auto" never picks triton on CPU, so nothing else changes.
if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

sys.path.insert(0, str(Path(__file__).parent))

# Every comparison with a float32 or float64 reference on a GPU needs TF32 off: with it, cuBLAS and
# cuDNN round float32 inputs to 10 mantissa bits and the reference stops being the truth.
from utils import no_tf32  # noqa: E402

no_tf32()

# The test shapes are tiny: one intra-op thread is fastest, and it keeps a loaded machine from
# stalling in OpenMP barriers (measured 100x slower with 2 threads while other jobs ran).
# Tests that exercise threading set their own count.
torch.set_num_threads(1)

from hypothesis import HealthCheck, settings  # noqa: E402

# Property tests: a short run by default (CI); `ELMO_FAST_HYPOTHESIS=thorough pytest tests/test_properties.py`
# generates 2,500 cases per property (eight properties: 20,000 in all). See the README.
settings.register_profile("ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=2500, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("ELMO_FAST_HYPOTHESIS", "ci"))
