"""Triton kernels of kernels/attention.py: flash attention forward (with LSE) and backward (dq, dk/dv), and split-KV
decode on a ragged cache; `flash_attn_triton` and `decode_attn_triton` have the contracts of the torch references
`flash_attn_ref` and `decode_attn_ref` there (kernels/attention.py's docstring: sources, fixes, what is verified).
Imported only when kernels.backend picks 'triton'."""
import math

import torch
import triton
import triton.language as tl
from triton.runtime.errors import OutOfResources

LOG2E = math.log2(math.e)  # kernels take qk_scale = D^-0.5 * log2(e): scores in log2 units for exp2
# Triton compiles a kernel once per class of each int argument (== 1, divisible by 16, other); T only bounds masks
# and offsets the LSE rows, so it is left unspecialised: one compilation serves every sequence length, not three
NO_SPEC = ("T",)
SMALL_TILES = (16, 16, 4, 1)  # _launch's last resort, fit any GPU's shared memory: <= 34 KB at fp32 D=128 (sm75: 64 KB)


# ----------------------------------------------------------------------------- Triton: forward

@triton.jit
def _head(axis, H):
    """(b*h, b, h) of this program from grid axis `axis`, as int64 so index * stride cannot overflow."""
    bh = tl.program_id(axis)
    return bh.to(tl.int64), (bh // H).to(tl.int64), (bh % H).to(tl.int64)


@triton.jit
def _tile(base, rows, offs_d, s_t, s_d, n_rows, D, MASK: tl.constexpr):
    """Load a (len(rows), BLOCK_D) tile; rows are bounds-checked only when MASK (off the tail they are in range)."""
    mask = offs_d[None, :] < D
    if MASK:
        mask = mask & (rows[:, None] < n_rows)
    return tl.load(base + rows[:, None] * s_t + offs_d[None, :] * s_d, mask=mask, other=0.0)


@triton.jit
def _put(base, x, rows, offs_d, s_t, s_d, n_rows, D):
    """Store a (len(rows), BLOCK_D) tile in base's dtype, dropping the padding (rows >= n_rows, columns >= D)."""
    tl.store(base + rows[:, None] * s_t + offs_d[None, :] * s_d, x.to(base.dtype.element_ty),
             (rows[:, None] < n_rows) & (offs_d[None, :] < D))


@triton.jit
def _fwd_inner(acc, l_i, m_i, q, K, V, skt, skd, svt, svd, offs_m, offs_d, lo, hi, T, D, qk_scale,
               CAUSAL: tl.constexpr, MASK: tl.constexpr, BLOCK_N: tl.constexpr, PREC: tl.constexpr):
    offs_n = tl.arange(0, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        k = _tile(K, cols, offs_d, skt, skd, T, D, MASK)  # (BLOCK_N, BLOCK_D)
        s = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale  # (BLOCK_M, BLOCK_N), log2 units
        if MASK:
            keep = cols[None, :] < T
            if CAUSAL:
                keep = keep & (offs_m[:, None] >= cols[None, :])
            s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))  # m_i starts at -1e30, not -inf: exp2 never sees -inf - -inf
        p = tl.math.exp2(s - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = _tile(V, cols, offs_d, svt, svd, T, D, MASK)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PREC)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit(do_not_specialize=NO_SPEC)
def _fwd_kernel(Q, K, V, O, LSE, sqb, sqt, sqh, sqd, skb, skt, skh, skd, svb, svt, svh, svd, sob, sot, soh, sod,
                H, T, D, qk_scale, CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                BLOCK_D: tl.constexpr, PREC: tl.constexpr):
    start_m = tl.program_id(0) * BLOCK_M
    bh, b, h = _head(1, H)
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q = _tile(Q + b * sqb + h * sqh, offs_m, offs_d, sqt, sqd, T, D, True)  # (BLOCK_M, BLOCK_D)
    K += b * skb + h * skh
    V += b * svb + h * svh
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    m_i = l_i - 1.0e30
    # keys [0, free) need no mask, [free, hi) are the diagonal/tail blocks; causal skips keys right of the diagonal
    free, hi = (start_m, tl.minimum(start_m + BLOCK_M, T)) if CAUSAL else ((T // BLOCK_N) * BLOCK_N, T)
    acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, K, V, skt, skd, svt, svd, offs_m, offs_d, 0, free, T, D,
                               qk_scale, CAUSAL, False, BLOCK_N, PREC)
    acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, K, V, skt, skd, svt, svd, offs_m, offs_d, free, hi, T, D,
                               qk_scale, CAUSAL, True, BLOCK_N, PREC)
    l_i = tl.where(l_i > 0, l_i, 1.0)  # only padding rows past T can be empty; they are not stored
    _put(O + b * sob + h * soh, acc / l_i[:, None], offs_m, offs_d, sot, sod, T, D)
    tl.store(LSE + bh * T + offs_m, m_i + tl.math.log2(l_i), offs_m < T)  # LSE (B, H, T) base 2


# ----------------------------------------------------------------------------- Triton: backward

@triton.jit
def _bwd_dkdv_inner(dk, dv, k, v, Q, DO, LSE, DELTA, sqt, sqd, sdt, sdd, offs_n, offs_d, lo, hi, T, D, qk_scale,
                    CAUSAL: tl.constexpr, MASK: tl.constexpr, BLOCK_M: tl.constexpr, PREC: tl.constexpr):
    offs_m = tl.arange(0, BLOCK_M)
    for start_m in range(lo, hi, BLOCK_M):
        rows = start_m + offs_m
        q = _tile(Q, rows, offs_d, sqt, sqd, T, D, MASK)  # (BLOCK_M, BLOCK_D)
        do = _tile(DO, rows, offs_d, sdt, sdd, T, D, MASK)
        lse = tl.load(LSE + rows, mask=rows < T, other=float("inf"))  # inf: padding rows get p = 0
        delta = tl.load(DELTA + rows, mask=rows < T, other=0.0)
        pT = tl.math.exp2(tl.dot(k, tl.trans(q), input_precision=PREC) * qk_scale - lse[None, :])  # (BN, BM)
        if MASK and CAUSAL:
            pT = tl.where(rows[None, :] >= offs_n[:, None], pT, 0.0)
        dv += tl.dot(pT.to(do.dtype), do, input_precision=PREC)
        dpT = tl.dot(v, tl.trans(do), input_precision=PREC)  # (BLOCK_N, BLOCK_M)
        dsT = pT * (dpT - delta[None, :])
        dk += tl.dot(dsT.to(q.dtype), q, input_precision=PREC)
    return dk, dv


@triton.jit(do_not_specialize=NO_SPEC)
def _bwd_dkdv_kernel(Q, K, V, DO, LSE, DELTA, DK, DV, sqb, sqt, sqh, sqd, skb, skt, skh, skd, svb, svt, svh, svd,
                     sdb, sdt, sdh, sdd, H, T, D, qk_scale, sm_scale, CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr,
                     BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PREC: tl.constexpr):
    """One program per (key block, b*h): dK, dV accumulate over the query blocks that see these keys.
    DK, DV are contiguous (B, T, H, D). Key rows past T compute garbage that is never stored."""
    start_n = tl.program_id(0) * BLOCK_N
    bh, b, h = _head(1, H)
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    k = _tile(K + b * skb + h * skh, offs_n, offs_d, skt, skd, T, D, True)  # (BLOCK_N, BLOCK_D)
    v = _tile(V + b * svb + h * svh, offs_n, offs_d, svt, svd, T, D, True)
    Q += b * sqb + h * sqh
    DO += b * sdb + h * sdh
    LSE += bh * T
    DELTA += bh * T
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    full = (T // BLOCK_M) * BLOCK_M  # query blocks below this are in range
    # causal: queries before start_n never see these keys; the diagonal band [lo, band) needs the causal mask
    lo, band = (start_n, tl.minimum(start_n + BLOCK_N, T)) if CAUSAL else (0, 0)
    dk, dv = _bwd_dkdv_inner(dk, dv, k, v, Q, DO, LSE, DELTA, sqt, sqd, sdt, sdd, offs_n, offs_d, lo, band, T, D,
                             qk_scale, CAUSAL, True, BLOCK_M, PREC)
    dk, dv = _bwd_dkdv_inner(dk, dv, k, v, Q, DO, LSE, DELTA, sqt, sqd, sdt, sdd, offs_n, offs_d, band, full, T, D,
                             qk_scale, CAUSAL, False, BLOCK_M, PREC)
    dk, dv = _bwd_dkdv_inner(dk, dv, k, v, Q, DO, LSE, DELTA, sqt, sqd, sdt, sdd, offs_n, offs_d,
                             tl.maximum(band, full), T, T, D, qk_scale, CAUSAL, True, BLOCK_M, PREC)
    out = b * T * H * D + h * D
    _put(DK + out, dk * sm_scale, offs_n, offs_d, H * D, 1, T, D)
    _put(DV + out, dv, offs_n, offs_d, H * D, 1, T, D)


@triton.jit
def _bwd_dq_inner(dq, q, do, lse, delta, K, V, skt, skd, svt, svd, offs_m, offs_d, lo, hi, T, D, qk_scale,
                  CAUSAL: tl.constexpr, MASK: tl.constexpr, BLOCK_N: tl.constexpr, PREC: tl.constexpr):
    offs_n = tl.arange(0, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        k = _tile(K, cols, offs_d, skt, skd, T, D, MASK)  # (BLOCK_N, BLOCK_D)
        v = _tile(V, cols, offs_d, svt, svd, T, D, MASK)
        p = tl.math.exp2(tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale - lse[:, None])  # (BM, BN)
        if MASK:  # same mask as the forward
            keep = cols[None, :] < T
            if CAUSAL:
                keep = keep & (offs_m[:, None] >= cols[None, :])
            p = tl.where(keep, p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PREC)  # (BLOCK_M, BLOCK_N)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PREC)
    return dq


@triton.jit(do_not_specialize=NO_SPEC)
def _bwd_dq_kernel(Q, K, V, DO, LSE, DELTA, DQ, sqb, sqt, sqh, sqd, skb, skt, skh, skd, svb, svt, svh, svd,
                   sdb, sdt, sdh, sdd, H, T, D, qk_scale, sm_scale, CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr,
                   BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PREC: tl.constexpr):
    """One program per (query block, b*h): dQ over the key blocks this query block sees (no atomics).
    DQ is contiguous (B, T, H, D)."""
    start_m = tl.program_id(0) * BLOCK_M
    bh, b, h = _head(1, H)
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q = _tile(Q + b * sqb + h * sqh, offs_m, offs_d, sqt, sqd, T, D, True)  # (BLOCK_M, BLOCK_D)
    do = _tile(DO + b * sdb + h * sdh, offs_m, offs_d, sdt, sdd, T, D, True)
    lse = tl.load(LSE + bh * T + offs_m, mask=offs_m < T, other=0.0)
    delta = tl.load(DELTA + bh * T + offs_m, mask=offs_m < T, other=0.0)
    K += b * skb + h * skh
    V += b * svb + h * svh
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    free, hi = (start_m, tl.minimum(start_m + BLOCK_M, T)) if CAUSAL else ((T // BLOCK_N) * BLOCK_N, T)  # as fwd
    dq = _bwd_dq_inner(dq, q, do, lse, delta, K, V, skt, skd, svt, svd, offs_m, offs_d, 0, free, T, D, qk_scale,
                       CAUSAL, False, BLOCK_N, PREC)
    dq = _bwd_dq_inner(dq, q, do, lse, delta, K, V, skt, skd, svt, svd, offs_m, offs_d, free, hi, T, D, qk_scale,
                       CAUSAL, True, BLOCK_N, PREC)
    _put(DQ + b * T * H * D + h * D, dq * sm_scale, offs_m, offs_d, H * D, 1, T, D)


# ----------------------------------------------------------------------------- Triton: decode (split-KV)

@triton.jit
def _decode_split_kernel(Q, K, V, SEQLENS, PO, PLSE, sqb, sqh, sqd, skb, skt, skh, skd, svb, svt, svh, svd,
                         H, D, split_len, qk_scale, NUM_SPLITS: tl.constexpr, BLOCK_N: tl.constexpr,
                         BLOCK_D: tl.constexpr):
    """Program (b*h, split) attends q[b, h] to keys [split*split_len, ...) clipped to the row's cache_seqlens and
    writes a normalised partial output (fp32, padded to BLOCK_D) and its base-2 LSE (-inf for an empty split).
    One query row: products and reductions, no tl.dot (which needs >= 16 rows); memory bound anyway."""
    bh, b, h = _head(0, H)
    split = tl.program_id(1)
    lo = split * split_len
    hi = tl.minimum(lo + split_len, tl.load(SEQLENS + b))
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    q = tl.load(Q + b * sqb + h * sqh + offs_d * sqd, mask=offs_d < D, other=0.0).to(tl.float32)  # (BLOCK_D,)
    K += b * skb + h * skh
    V += b * svb + h * svh
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    l_i = tl.sum(acc, 0)  # fp32 scalar 0
    m_i = l_i - 1.0e30
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        k = _tile(K, cols, offs_d, skt, skd, hi, D, True).to(tl.float32)  # (BLOCK_N, BLOCK_D)
        s = tl.where(cols < hi, tl.sum(k * q[None, :], 1) * qk_scale, float("-inf"))  # (BLOCK_N,)
        m_new = tl.maximum(m_i, tl.max(s, 0))
        p = tl.math.exp2(s - m_new)
        alpha = tl.math.exp2(m_i - m_new)
        v = _tile(V, cols, offs_d, svt, svd, hi, D, True).to(tl.float32)
        l_i = l_i * alpha + tl.sum(p, 0)
        acc = acc * alpha + tl.sum(p[:, None] * v, 0)
        m_i = m_new
    lse = tl.where(l_i > 0, m_i + tl.math.log2(tl.maximum(l_i, 1e-30)), float("-inf"))
    part = bh * NUM_SPLITS + split
    tl.store(PO + part * BLOCK_D + offs_d, acc / tl.maximum(l_i, 1e-30))
    tl.store(PLSE + part, lse)


@triton.jit
def _decode_reduce_kernel(PO, PLSE, O, sob, soh, sod, H, D, NUM_SPLITS: tl.constexpr, BLOCK_S: tl.constexpr,
                          BLOCK_D: tl.constexpr):
    """Combine the splits of one (b, h): o = sum_s 2^(lse_s - max) o_s / sum_s 2^(lse_s - max)."""
    bh, b, h = _head(0, H)
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    s_ok = offs_s < NUM_SPLITS
    lse = tl.load(PLSE + bh * NUM_SPLITS + offs_s, mask=s_ok, other=float("-inf"))  # (BLOCK_S,)
    m = tl.max(lse, 0)
    w = tl.math.exp2(lse - tl.where(m > float("-inf"), m, 0.0))  # an all-empty row (seqlen 0) gives 0, not NaN
    po = tl.load(PO + (bh * NUM_SPLITS + offs_s[:, None]) * BLOCK_D + offs_d[None, :],
                 mask=s_ok[:, None], other=0.0)  # (BLOCK_S, BLOCK_D)
    o = tl.sum(w[:, None] * po, 0) / tl.maximum(tl.sum(w, 0), 1e-30)
    tl.store(O + b * sob + h * soh + offs_d * sod, o.to(O.dtype.element_ty), mask=offs_d < D)


# ----------------------------------------------------------------------------- launchers

def _block_d(D):
    assert 1 <= D <= 256, f"head dim {D} not supported (1..256)"
    return max(16, triton.next_power_of_2(D))  # tl.dot needs >= 16; the padding is masked


def _blocks(D, dtype):
    """{kernel: (BLOCK_M, BLOCK_N, num_warps, num_stages)}. Kernel constraints: fwd/dq BLOCK_M % BLOCK_N == 0,
    dkdv BLOCK_N % BLOCK_M == 0. Chosen by compiling for sm80/sm90 without a GPU (ptxas, no register spills but
    fp32 dkdv's 32-64 bytes); never timed. fp32 gets small tiles: its ieee dots run on FMA units and its tiles take
    twice the registers; its dkdv is not software-pipelined (num_stages 1): Triton 3.0's pipeliner rejects it."""
    if dtype == torch.float32 or D > 128:
        return dict(fwd=(32, 32, 8, 2), dkdv=(32, 32, 8, 1), dq=(32, 32, 8, 2))
    if D <= 64:
        return dict(fwd=(128, 64, 8, 3), dkdv=(32, 128, 8, 3), dq=(128, 32, 8, 3))
    return dict(fwd=(128, 64, 8, 3), dkdv=(32, 64, 8, 3), dq=(64, 32, 4, 3))


def _launch(kernel, tiles, along, q, causal, *args):
    """A flash kernel on grid (cdiv(T, tiles[along]), B*H): along=0 gives each program BLOCK_M queries, along=1 BLOCK_N
    keys. tiles: (BLOCK_M, BLOCK_N, num_warps, num_stages) from _blocks; on a GPU with less shared memory than they need
    (OutOfResources, raised before launching) they run unpipelined, then as SMALL_TILES."""
    B, T, H, D = q.shape
    bm, bn, warps, stages = tiles
    prec = "tf32" if q.dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 else "ieee"
    meta = dict(CAUSAL=causal, BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=_block_d(D), PREC=prec)
    try:
        kernel[(triton.cdiv(T, tiles[along]), B * H)](*args, **meta, num_warps=warps, num_stages=stages)
    except OutOfResources:  # e.g. sm75 (64 KB): Triton 3.7's fp16 D=64 dkdv takes 80 KB, Triton 3.0's fp32 D=128 68
        if tiles == SMALL_TILES:
            raise
        _launch(kernel, (bm, bn, warps, 1) if stages > 1 else SMALL_TILES, along, q, causal, *args)


def _fwd(q, k, v, o, lse, causal, blocks=None):
    """Writes o (B, T, H, D) and lse (B, H, T) fp32 base 2. q, k, v any strides."""
    B, T, H, D = q.shape
    _launch(_fwd_kernel, (blocks or _blocks(D, q.dtype))["fwd"], 0, q, causal, q, k, v, o, lse,
            *q.stride(), *k.stride(), *v.stride(), *o.stride(), H, T, D, D ** -0.5 * LOG2E)


def _bwd(q, k, v, o, lse, do, dq, dk, dv, causal, blocks=None):
    """Writes dq, dk, dv (contiguous (B, T, H, D)) from the forward's o, lse and the output gradient do."""
    B, T, H, D = q.shape
    blocks = blocks or _blocks(D, q.dtype)
    assert dq.is_contiguous() and dk.is_contiguous() and dv.is_contiguous()
    # delta = rowsum(o * do) = rowsum(P * dP), the softmax-backward correction: (B, H, T) fp32; O(T) work, torch
    delta = (o.float() * do.float()).sum(-1).transpose(1, 2).contiguous()
    args = (*q.stride(), *k.stride(), *v.stride(), *do.stride(), H, T, D, D ** -0.5 * LOG2E, D ** -0.5)
    _launch(_bwd_dkdv_kernel, blocks["dkdv"], 1, q, causal, q, k, v, do, lse, delta, dk, dv, *args)
    _launch(_bwd_dq_kernel, blocks["dq"], 0, q, causal, q, k, v, do, lse, delta, dq, *args)


class _FlashAttn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal):
        B, T, H, D = q.shape
        assert k.shape == q.shape and v.shape == q.shape and k.dtype == q.dtype and v.dtype == q.dtype, \
            f"q, k, v must share shape and dtype, got {[(tuple(x.shape), x.dtype) for x in (q, k, v)]}"
        o, lse = q.new_empty(q.shape), q.new_empty((B, H, T), dtype=torch.float32)
        _fwd(q, k, v, o, lse, causal)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.causal = causal
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = (q.new_empty(q.shape) for _ in range(3))  # contiguous, as _bwd requires
        _bwd(q, k, v, o, lse, do, dq, dk, dv, ctx.causal)
        return dq, dk, dv, None


def flash_attn_triton(q, k, v, causal=True):
    return _FlashAttn.apply(q, k, v, causal)


def _split_plan(B, H, S, block_n, num_splits=None):
    """(num_splits, split_len): about 256 programs (two waves on an A100/H100), each a whole number of blocks."""
    n_blocks = triton.cdiv(S, block_n)
    split_len = triton.cdiv(n_blocks, num_splits or min(n_blocks, max(1, 256 // (B * H)))) * block_n
    return triton.cdiv(S, split_len), split_len


def _decode(q, k_cache, v_cache, cache_seqlens, out, block_n=64, num_splits=None, parts=None):
    """Writes and returns out (B, 1, H, D). Splits are sized from shapes only (never from seqlens values: no host
    sync, CUDA graph safe); empty splits of short rows exit after one load. parts: optional preallocated (po, plse)."""
    B, _, H, D = q.shape
    bd = _block_d(D)
    num_splits, split_len = _split_plan(B, H, k_cache.size(1), block_n, num_splits)
    po, plse = parts or (q.new_empty(B * H * num_splits * bd, dtype=torch.float32),
                         q.new_empty(B * H * num_splits, dtype=torch.float32))
    _decode_split_kernel[(B * H, num_splits)](
        q, k_cache, v_cache, cache_seqlens, po, plse, q.stride(0), q.stride(2), q.stride(3), *k_cache.stride(),
        *v_cache.stride(), H, D, split_len, D ** -0.5 * LOG2E, NUM_SPLITS=num_splits, BLOCK_N=block_n, BLOCK_D=bd)
    _decode_reduce_kernel[(B * H,)](po, plse, out, out.stride(0), out.stride(2), out.stride(3), H, D,
                                    NUM_SPLITS=num_splits, BLOCK_S=triton.next_power_of_2(num_splits), BLOCK_D=bd)
    return out


def decode_attn_triton(q, k_cache, v_cache, cache_seqlens):
    assert q.size(1) == 1 and cache_seqlens.dtype == torch.int32 and cache_seqlens.device == q.device, \
        "decode_attn: q must be (B, 1, H, D) and cache_seqlens int32 on q's device"
    return _decode(q, k_cache, v_cache, cache_seqlens, q.new_empty(q.shape))
