"""Benchmarks, one section per component; each prints a ratio against a baseline measured in the same run.

  python bench.py attention   Triton flash attention / decode vs torch SDPA (needs CUDA; says so without it)
  python bench.py sampling    Triton sampler vs a torch sampler (needs CUDA; says so without it)
  python bench.py engine      sample.py E-step-shaped generate+score vs a naive no-cache loop and HF generate
  python bench.py train       train.py tokens/s vs a minimal plain fp32 PyTorch loop, and MFU vs measured peak
"""
import argparse
import sys

# ----------------------------------------------------------------------------- attention
# (section: attention)

# ----------------------------------------------------------------------------- sampling
# (section: sampling)

# ----------------------------------------------------------------------------- engine
# (section: engine)

# ----------------------------------------------------------------------------- train
# (section: train)

SECTIONS = {n[len("bench_"):]: f for n, f in list(globals().items()) if n.startswith("bench_")}  # bench_<section>()

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sections", nargs="*", help=f"which benchmarks to run (default: all)")
    args = ap.parse_args()
    for name in args.sections or list(SECTIONS):
        if name not in SECTIONS:
            sys.exit(f"unknown section {name!r}; choose from {', '.join(SECTIONS)}")
        print(f"== {name}")
        SECTIONS[name]()
