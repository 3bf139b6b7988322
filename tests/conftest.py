import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

# The test shapes are tiny: one intra-op thread is fastest, and it keeps a loaded machine from
# stalling in OpenMP barriers (measured 100x slower with 2 threads while other jobs ran).
# Tests that exercise threading set their own count.
torch.set_num_threads(1)
