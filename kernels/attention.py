"""Attention for the GPT: causal/full attention for training and prefill, and decode against a ragged KV cache.

Layout is the flash-attn convention, (B, T, H, D), any strides (model.py passes views of its fused qkv tensor and
slices of the cache). Every op has a readable torch reference here; `model.py` calls only `flash_attn` and
`decode_attn`, which dispatch (kernels/__init__.py `backend`) to the reference or to the Triton kernels of
kernels/attention_triton.py (imported only then: triton is optional on a CPU machine).

Triton kernels (reference: Triton tutorial 06-fused-attention.py, FlashAttention-2; split-KV decode as in
lightllm/SGLang "flash-decoding"), with the tutorial's gaps fixed: boundary masks so any T works, causal or not in
both passes, forward and dq skip key blocks above the diagonal and apply masks only on the diagonal/tail blocks,
generic dtype (fp32/fp16/bf16; fp32 dots honour torch.backends.cuda.matmul.allow_tf32), head dims 1..256 (padded
to a power of two >= 16 inside the kernel). Softmax runs in base 2: the saved LSE is log2(sum 2^(s*log2e)).
Verified only under TRITON_INTERPRET=1 on CPU: the interpreter has no bf16 tl.dot, so bf16 flash attention is
unverified here (decode has no dot and is checked in bf16). All kernels compile for sm80/sm90 with Triton 3.0
and 3.7 (checked ahead-of-time with the bundled ptxas, no GPU); bench_gpu.py checks them compiled on a GPU.
"""
import torch
import torch.nn.functional as F

from kernels import backend


# ----------------------------------------------------------------------------- torch references

def flash_attn_ref(q, k, v, causal=True):
    """softmax(q k^T / sqrt(D)) v. q, k, v: (B, T, H, D) -> (B, T, H, D)."""
    if q.device.type == "cpu" and q.dtype == torch.bfloat16:
        # CPU SDPA is slower in bf16 than in fp32 (forward and backward): compute in fp32
        with torch.autocast("cpu", enabled=False):
            return flash_attn_ref(q.float(), k.float(), v.float(), causal).to(q.dtype)
    y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal)
    return y.transpose(1, 2)


def decode_attn_ref(q, k_cache, v_cache, cache_seqlens):
    """One new query per row against that row's first cache_seqlens[b] cached keys.
    q: (B, 1, H, D); k_cache, v_cache: (B, S, H, D); cache_seqlens: (B,) int32, each in [1, S]."""
    valid = torch.arange(k_cache.size(1), device=q.device)[None, :] < cache_seqlens[:, None].long()  # (B, S)
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
