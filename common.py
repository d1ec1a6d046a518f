"""The process and its device, shared by train.py and em.py: a torchrun process group joined or started, this
rank's device, rank-0 printing and barriers (no-ops in one process), and the bf16 choice read from the device."""
import os
import re

import torch
import torch.distributed as dist


def setup_dist(device="auto"):
    """-> (rank, world, local_rank, owned). Joins a caller's process group, or starts one under torchrun."""
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), local_rank, False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        cuda = torch.cuda.is_available() and device in ("auto", "cuda")
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if cuda else "gloo")
        return dist.get_rank(), dist.get_world_size(), local_rank, True
    return 0, 1, 0, False


def pick_device(device="auto", local_rank=None):
    """'auto': cuda:LOCAL_RANK when CUDA is there, else the CPU."""
    if device != "auto":
        return torch.device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", 0)) if local_rank is None else local_rank
    return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")


def rank_world():
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def print0(*a):
    if rank_world()[0] == 0:
        print(*a, flush=True)


def barrier():
    if dist.is_initialized():
        dist.barrier()


def bf16_native(device):
    """Does this device do bf16 math natively? CUDA: when supported. CPU: when its flags list AVX512-BF16 or AMX.
    Read from the flags, never timed, so a busy machine cannot pick another dtype for another phase (the dtype
    decides every number a run prints)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:  # not Linux: fp32, the exact choice
        return False
    return re.search(r"\b(avx512_bf16|amx_bf16)\b", flags) is not None


def device_error(name):
    if name == "auto":
        return None
    try:
        d = torch.device(name)
    except RuntimeError:
        return f"{name!r} is not a device: auto, cpu, cuda or cuda:N (--device)"
    if d.type not in ("cpu", "cuda"):
        return f"{name!r}: the code runs on auto, cpu, cuda or cuda:N (--device)"
    if d.type == "cuda" and (not torch.cuda.is_available() or (d.index or 0) >= torch.cuda.device_count()):
        return f"{name!r}: no such CUDA device here (--device)"
    return None
