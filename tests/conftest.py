"""Test-session setup: Triton kernels run in the interpreter on CPU tensors (no GPU on any of our machines).
Set before anything imports triton, since @triton.jit reads it when a kernel is defined."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402

# Tests use tiny tensors: one thread avoids OpenMP spin-waiting, which costs 100x on a busy 2-core machine.
torch.set_num_threads(1)
