"""The fused Triton sampler of kernels/sampling.py: `sample_triton` has `sample_ref`'s contract and returns the same
bits (kernels/sampling.py's docstring). Imported only when kernels.backend picks 'triton'.
"""
import torch
import triton
import triton.language as tl

from kernels.sampling import _rows, row_keys


# ----------------------------------------------------------------------------- Triton kernel
# Grid: one program per block of ROWS rows; every loop walks the vocabulary in (ROWS, BLOCK) tiles, so V is
# unbounded (128k and more). Thresholds live in "key" space: the fp32 bit pattern mapped to an int32 with the same
# order, so a binary search over keys finds an exact logit threshold in <= 32 passes and never sorts. Banned ids
# (NB per row, -1 = padding) are masked in every tile's tempered logits s, so every pass sees the same support.


@triton.jit
def _mix32(x):  # uint32 -> uint32, the same steps as sampling.mix32 (uint32 multiply wraps by itself)
    x ^= x >> 16
    x *= 0x21F0AAAD
    x ^= x >> 15
    x *= 0x735A2D97
    x ^= x >> 15
    return x


@triton.jit
def _key(s):  # order-preserving int32 key of fp32 values; -0.0 (key -1) is folded onto +0.0 (key 0)
    b = s.to(tl.int32, bitcast=True)
    k = b ^ ((b >> 31) & 0x7FFFFFFF)
    return tl.where(k == -1, 0, k)


@triton.jit
def _tile(logits_ptr, stride, rows, rmask, start, V, scale, ban_ptr, NB: tl.constexpr, BLOCK: tl.constexpr):
    """One (ROWS, BLOCK) tile: column ids, validity, raw fp32 logits x and tempered s (-inf outside and at the
    row's banned ids)."""
    cols = start + tl.arange(0, BLOCK)  # (BLOCK,)
    valid = rmask[:, None] & (cols < V)[None, :]  # (ROWS, BLOCK)
    x = tl.load(logits_ptr + rows.to(tl.int64)[:, None] * stride + cols[None, :], mask=valid,
                other=float("-inf")).to(tl.float32)
    s = x * scale[:, None]
    for j in tl.static_range(NB):
        b = tl.load(ban_ptr + rows * NB + j, mask=rmask, other=-1)  # (ROWS,) the j-th banned id of each row
        s = tl.where(cols[None, :] == b[:, None], float("-inf"), s)
    return cols, valid, x, s


@triton.jit
def _gumbel_tile(s, cols, rkey):
    """s + Gumbel noise for every token of the tile; bits = mix32(row key ^ mix32(token + salt))."""
    t = _mix32(cols.to(tl.uint32) + 0x9E3779B9)  # (BLOCK,)
    h = _mix32(rkey[:, None] ^ t[None, :])  # (ROWS, BLOCK)
    u = ((h >> 8).to(tl.float32) + 0.5) * 5.9604644775390625e-08  # (bits + 0.5) / 2^24, in (0, 1)
    return s - tl.log(-tl.log(u))


@triton.jit
def _online_lse(m, l, s):
    """Running (max, sum exp(. - max)) per row updated with tile s (ROWS, BLOCK); safe when all -inf."""
    m_new = tl.maximum(m, tl.max(s, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    l = l * tl.exp(m - m_safe) + tl.sum(tl.exp(s - m_safe[:, None]), 1)
    return m_new, l


@triton.jit
def _argmax_update(best, idx, val, cols):
    """Running (max, first index of it) per row; strict > keeps the earliest tile on ties, like torch."""
    tmax = tl.max(val, 1)
    tidx = tl.min(tl.where(val == tmax[:, None], cols[None, :], 2147483647), 1)
    take = tmax > best
    return tl.where(take, tmax, best), tl.where(take, tidx, idx)


@triton.jit
def _support_pass(logits_ptr, stride, rows, rmask, V, scale, ban_ptr, rkey, thr, NB: tl.constexpr, R: tl.constexpr,
                  BLOCK: tl.constexpr):
    """log-sum-exp of s and the Gumbel-max token over each row's support {key(s) >= thr}."""
    m = tl.full((R,), float("-inf"), tl.float32)
    l = tl.zeros((R,), tl.float32)
    best = tl.full((R,), float("-inf"), tl.float32)
    tok = tl.zeros((R,), tl.int32)
    for start in range(0, V, BLOCK):
        cols, valid, x, s = _tile(logits_ptr, stride, rows, rmask, start, V, scale, ban_ptr, NB, BLOCK)
        s = tl.where(valid & (_key(s) >= thr[:, None]), s, float("-inf"))
        m, l = _online_lse(m, l, s)
        best, tok = _argmax_update(best, tok, _gumbel_tile(s, cols, rkey), cols)
    return m + tl.log(l), tok


@triton.jit
def _sample_kernel(logits_ptr, stride, B, V, inv_t_ptr, top_k_ptr, top_p_ptr, rkey_ptr, ban_ptr,
                   tok_ptr, logprob_ptr, raw_ptr, ROWS: tl.constexpr, BLOCK: tl.constexpr,
                   FILTER: tl.constexpr, NB: tl.constexpr):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)  # (ROWS,)
    rmask = rows < B
    inv_t = tl.load(inv_t_ptr + rows, mask=rmask, other=1.0)
    greedy = inv_t == 0.0  # temperature 0
    scale = tl.where(greedy, 1.0, inv_t)
    rkey = tl.load(rkey_ptr + rows, mask=rmask, other=0).to(tl.uint32)
    # pass 1: raw log-sum-exp, argmax and max of s (banned ids masked), key range of s, and (if no filter) the
    # answer itself
    mr = tl.full((ROWS,), float("-inf"), tl.float32)
    lr = tl.zeros((ROWS,), tl.float32)
    amax = tl.full((ROWS,), float("-inf"), tl.float32)
    atok = tl.zeros((ROWS,), tl.int32)
    kmin = tl.full((ROWS,), 2147483647, tl.int32)
    kmax = tl.full((ROWS,), -2147483647 - 1, tl.int32)
    m = tl.full((ROWS,), float("-inf"), tl.float32)
    l = tl.zeros((ROWS,), tl.float32)
    best = tl.full((ROWS,), float("-inf"), tl.float32)
    stok = tl.zeros((ROWS,), tl.int32)
    for start in range(0, V, BLOCK):
        cols, valid, x, s = _tile(logits_ptr, stride, rows, rmask, start, V, scale, ban_ptr, NB, BLOCK)
        mr, lr = _online_lse(mr, lr, x)
        amax, atok = _argmax_update(amax, atok, s, cols)  # scale 1 on argmax rows: s is the masked x
        key = _key(s)
        kmin = tl.minimum(kmin, tl.min(tl.where(valid, key, 2147483647), 1))
        kmax = tl.maximum(kmax, tl.max(tl.where(valid, key, -2147483647 - 1), 1))
        if not FILTER:
            m, l = _online_lse(m, l, s)
            best, stok = _argmax_update(best, stok, _gumbel_tile(s, cols, rkey), cols)
    lse = m + tl.log(l)
    if FILTER:
        k = tl.load(top_k_ptr + rows, mask=rmask, other=0)
        p = tl.load(top_p_ptr + rows, mask=rmask, other=1.0)
        # top-k: the largest key t with #{key >= t} >= k, i.e. the k-th largest tempered logit
        lo = kmin.to(tl.int64)
        hi = tl.where((k > 0) & (k < V) & ~greedy & rmask, kmax.to(tl.int64) + 1, lo + 1)
        while tl.max(hi - lo, 0) > 1:
            mid = lo + (hi - lo) // 2
            cnt = tl.zeros((ROWS,), tl.int64)
            for start in range(0, V, BLOCK):
                cols, valid, x, s = _tile(logits_ptr, stride, rows, rmask, start, V, scale, ban_ptr, NB, BLOCK)
                cnt += tl.sum((valid & (_key(s) >= mid[:, None])).to(tl.int64), 1)
            ok = cnt >= k
            active = hi - lo > 1
            lo = tl.where(active & ok, mid, lo)
            hi = tl.where(active & ~ok, mid, hi)
        thr_k = lo
        m_s = tl.where(amax == float("-inf"), 0.0, amax)  # max of s over the allowed ids; 0 for an all -inf row
        z = tl.zeros((ROWS,), tl.float32)  # top-k mass, relative to the row max m
        for start in range(0, V, BLOCK):
            cols, valid, x, s = _tile(logits_ptr, stride, rows, rmask, start, V, scale, ban_ptr, NB, BLOCK)
            z += tl.sum(tl.where(valid & (_key(s) >= thr_k[:, None]), tl.exp(s - m_s[:, None]), 0.0), 1)
        # top-p: the smallest key t with mass{key > t} < p * z (mass over the top-k support)
        lo = thr_k - 1
        hi = tl.where((p < 1.0) & ~greedy & rmask, kmax.to(tl.int64), thr_k)
        while tl.max(hi - lo, 0) > 1:
            mid = lo + (hi - lo) // 2
            mass = tl.zeros((ROWS,), tl.float32)
            for start in range(0, V, BLOCK):
                cols, valid, x, s = _tile(logits_ptr, stride, rows, rmask, start, V, scale, ban_ptr, NB, BLOCK)
                key = _key(s)
                inside = valid & (key > mid[:, None]) & (key >= thr_k[:, None])
                mass += tl.sum(tl.where(inside, tl.exp(s - m_s[:, None]), 0.0), 1)
            below = mass < p * z
            active = hi - lo > 1
            hi = tl.where(active & below, mid, hi)
            lo = tl.where(active & ~below, mid, lo)
        lse, stok = _support_pass(logits_ptr, stride, rows, rmask, V, scale, ban_ptr, rkey, hi, NB, ROWS, BLOCK)
    tok = tl.where(greedy, atok, stok)
    x_tok = tl.load(logits_ptr + rows.to(tl.int64) * stride + tok, mask=rmask, other=0.0).to(tl.float32)
    tl.store(tok_ptr + rows, tok.to(tl.int64), mask=rmask)
    tl.store(logprob_ptr + rows, tl.where(greedy, 0.0, x_tok * scale - lse), mask=rmask)
    tl.store(raw_ptr + rows, x_tok - (mr + tl.log(lr)), mask=rmask)


def _blocks(V, rows=None, block=None):
    """Tile shape: BLOCK <= 2048 columns, ROWS <= 4 rows of ~1k logits for small V, and the warp count. Chosen
    from ptxas -v for sm80 (0 spills, <= 122 registers); wider multi-row tiles need 170-250 registers."""
    block = block or min(2048, triton.next_power_of_2(V))
    rows = rows or max(1, min(4, 1024 // block))
    return rows, block, 8 if block >= 2048 else 4


def sample_triton(logits, temperature, top_k, top_p, seed, ids, steps, banned=None, rows=None, block=None):
    """The fused Triton sampler (same contract and bits as sample_ref). rows/block override the tile shape."""
    B, V = logits.shape
    dev = logits.device
    if logits.stride(1) != 1:
        logits = logits.contiguous()
    temp = _rows(temperature, B, torch.float32, dev)
    inv_t = torch.where(temp > 0, 1.0 / temp, 0.0)  # 0 marks an argmax row; same fp32 bits as sample_ref's scale
    top_k_t = _rows(top_k, B, torch.int64, dev)
    top_p_t = _rows(top_p, B, torch.float32, dev)
    filt = torch.is_tensor(top_k) or torch.is_tensor(top_p) or (0 < top_k < V) or top_p < 1.0
    rkey = row_keys(seed, ids.to(dev).long(), steps.to(dev).long())
    NB = 0 if banned is None else banned.shape[1]
    ban = banned.to(device=dev, dtype=torch.int32).contiguous() if NB else rkey  # (B, NB); unread when NB = 0
    tok = torch.empty(B, dtype=torch.int64, device=dev)
    logprob = torch.empty(B, dtype=torch.float32, device=dev)
    raw = torch.empty(B, dtype=torch.float32, device=dev)
    R, BLOCK, warps = _blocks(V, rows, block)
    _sample_kernel[(triton.cdiv(B, R),)](logits, logits.stride(0), B, V, inv_t, top_k_t, top_p_t, rkey, ban,
                                         tok, logprob, raw, ROWS=R, BLOCK=BLOCK, FILTER=filt, NB=NB,
                                         num_warps=warps, enable_fp_fusion=False)  # s + g rounded as in torch, no fma
    return tok, logprob, raw
