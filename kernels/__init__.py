"""The kernels' one dispatch point: `backend(x)` says which implementation runs on tensor x.

'triton' on CUDA, 'torch' (the readable references) elsewhere. BOLT_KERNELS=triton|torch overrides, read once when
this package is imported (`CHOICE`); with TRITON_INTERPRET=1, 'triton' runs the kernels on CPU tensors. Triton
itself is imported only when a Triton kernel is first called (kernels/attention_triton.py, kernels/sampling.py),
so a CPU machine without triton runs everything on the references.
"""
import os

CHOICE = os.environ.get("BOLT_KERNELS", "")


def backend(x):
    """'triton' or 'torch' for tensor x (see the module docstring); raises on a bad BOLT_KERNELS."""
    if CHOICE not in ("", "triton", "torch"):
        raise ValueError(f"BOLT_KERNELS must be 'triton' or 'torch', got {CHOICE!r}")
    choice = CHOICE or ("triton" if x.is_cuda else "torch")
    if choice == "triton" and not x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("BOLT_KERNELS=triton on CPU tensors needs TRITON_INTERPRET=1 (set before importing)")
    return choice
