"""Shared test set-up."""

import torch

# The models under test are tiny: on a 2-core machine, intra-op threads cost far more than they save
# (a reduced-rank regression step measured 10x slower with 2 threads on a loaded machine).
torch.set_num_threads(1)
