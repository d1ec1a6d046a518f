"""Attention for the GPT: causal/full attention for training and prefill, and decode against a ragged KV cache.

Layout is the flash-attn convention, (B, T, H, D). Every op has a readable torch reference here; `model.py`
calls only `flash_attn` and `decode_attn`, which dispatch (see `backend`).
"""
import os

import torch
import torch.nn.functional as F


def backend(x):
    """'triton' on CUDA, 'torch' elsewhere; BOLT_KERNELS=triton|torch overrides (with TRITON_INTERPRET=1,
    'triton' runs the kernels on CPU tensors)."""
    choice = os.environ.get("BOLT_KERNELS", "")
    if choice not in ("", "triton", "torch"):
        raise ValueError(f"BOLT_KERNELS must be 'triton' or 'torch', got {choice!r}")
    return choice or ("triton" if x.is_cuda else "torch")


# ----------------------------------------------------------------------------- torch references

def flash_attn_ref(q, k, v, causal=True):
    """softmax(q k^T / sqrt(D)) v. q, k, v: (B, T, H, D) -> (B, T, H, D)."""
    y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal)
    return y.transpose(1, 2)


def decode_attn_ref(q, k_cache, v_cache, cache_seqlens):
    """One new query per row against that row's first cache_seqlens[b] cached keys.
    q: (B, 1, H, D); k_cache, v_cache: (B, S, H, D); cache_seqlens: (B,) int32, each in [1, S]."""
    S = k_cache.size(1)
    valid = torch.arange(S, device=q.device)[None, :] < cache_seqlens[:, None].long()  # (B, S)
    y = F.scaled_dot_product_attention(q.transpose(1, 2), k_cache.transpose(1, 2), v_cache.transpose(1, 2),
                                       attn_mask=valid[:, None, None, :])
    return y.transpose(1, 2)


# ----------------------------------------------------------------------------- dispatch

def flash_attn(q, k, v, causal=True):
    if backend(q) == "triton":
        from kernels.attention_triton import flash_attn_triton
        return flash_attn_triton(q, k, v, causal)
    return flash_attn_ref(q, k, v, causal)


def decode_attn(q, k_cache, v_cache, cache_seqlens):
    if backend(q) == "triton":
        from kernels.attention_triton import decode_attn_triton
        return decode_attn_triton(q, k_cache, v_cache, cache_seqlens)
    return decode_attn_ref(q, k_cache, v_cache, cache_seqlens)
