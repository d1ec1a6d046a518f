"""Batched sampling for generation: temperature, top-k, top-p, Gumbel-max on counter-based noise.

sample(logits, temperature, top_k, top_p, seed, ids, steps) -> (token, logprob, raw_logprob), all (B,):
- logits (B, V) any float dtype (computed in fp32). temperature / top_k / top_p: python scalars or (B,) tensors;
  temperature 0 = argmax, top_k 0 = off, top_p 1.0 = off. seed: python int; ids, steps: (B,) int64.
- logprob: log-prob of the token under the distribution actually sampled from (temperature, then top-k, then
  top-p on the renormalised top-k distribution) -- this is log q for BoLT's importance weights; 0 for argmax rows.
- raw_logprob: log-prob under the untempered, unfiltered log_softmax(logits).
Support semantics (thresholds, so ties are kept together): top-k keeps every token whose tempered logit is >= the
k-th largest; top-p keeps a token iff the top-k-renormalised mass of tokens strictly above it is < top_p.

The noise for token t of a row is a 32-bit integer hash of (seed, request id, step, t), the same bits in torch and
Triton, so a draw never depends on the backend, the batch it ran in, the rank or a resume. Sampling is Gumbel-max:
argmax over the support of s_t - log(-log u_t), s = logits / temperature (gpt-fast / vLLM use the equivalent
exponential race). The Triton kernel follows FlashInfer's sorting-free idea (threshold search instead of a sort),
made exact so the renormalised log-probability can be returned (FlashInfer returns none).

`sample` dispatches like kernels/attention.py (`backend`): Triton on CUDA, torch on CPU, BOLT_KERNELS overrides.
"""
import torch

from kernels.attention import backend

try:  # triton is optional on CPU machines; defining a @triton.jit kernel needs no GPU or driver
    import triton
    import triton.language as tl
except ImportError:
    triton = None

M32 = 0xFFFFFFFF
MIX1, MIX2 = 0x21F0AAAD, 0x735A2D97  # lowbias32 constants (hash-prospector); both < 2^31 so int64 products fit
TOKEN_SALT = 0x9E3779B9


# ----------------------------------------------------------------------------- counter-based noise (torch)

def mix32(x):
    """32-bit avalanche hash of the uint32 values held in an int64 tensor (masking emulates uint32 wraparound)."""
    x = x ^ (x >> 16)
    x = (x * MIX1) & M32
    x = x ^ (x >> 15)
    x = (x * MIX2) & M32
    return x ^ (x >> 15)


def row_keys(seed, ids, steps):
    """(B,) uint32-valued int64 key of each row from (seed, request id, step); token noise is hashed from it."""
    h = mix32(torch.full_like(ids, seed & M32))
    for v in ((seed >> 32) & M32, ids & M32, (ids >> 32) & M32, steps & M32, (steps >> 32) & M32):
        h = mix32(h ^ v)
    return h


_TOKEN_MIX = {}


def token_mix(V, device):
    """(V,) mix32(t + TOKEN_SALT) for every token id t, cached (it does not depend on the row)."""
    key = (V, str(device))
    if key not in _TOKEN_MIX:
        _TOKEN_MIX[key] = mix32((torch.arange(V, device=device, dtype=torch.int64) + TOKEN_SALT) & M32)
    return _TOKEN_MIX[key]


def uniform_bits(keys, V):
    """(B, V) hash bits: mix32(row_key ^ token_mix[t]), in place to keep the (B, V) int64 temporaries few."""
    x = keys[:, None] ^ token_mix(V, keys.device)[None, :]
    x ^= x >> 16
    x.mul_(MIX1).bitwise_and_(M32)
    x ^= x >> 15
    x.mul_(MIX2).bitwise_and_(M32)
    x ^= x >> 15
    return x


def gumbel(keys, V):
    """(B, V) fp32 Gumbel noise -log(-log u), u = (top 24 hash bits + 0.5) / 2^24 in (0, 1), exact in fp32."""
    u = (uniform_bits(keys, V) >> 8).float().add_(0.5).mul_(2.0 ** -24)
    return u.log_().neg_().log_().neg_()


def gumbel_argmax(s, keys, chunk=1 << 18):
    """(B,) argmax_t s[b, t] + gumbel[b, t], a few rows at a time so the int64 temporaries stay in cache
    (about 6x faster on CPU than one (B, V) pass at V=50k)."""
    B, V = s.shape
    rows = max(1, chunk // V)
    return torch.cat([(s[i:i + rows] + gumbel(keys[i:i + rows], V)).argmax(dim=-1) for i in range(0, B, rows)])


# ----------------------------------------------------------------------------- torch reference

def _rows(x, B, dtype, device):
    """A python scalar or (B,) tensor parameter as a (B,) tensor."""
    if torch.is_tensor(x):
        return x.to(device=device, dtype=dtype).reshape(B)
    return torch.full((B,), x, dtype=dtype, device=device)


def _on_host(flag):
    """Value of a (B,) bool tensor's any() when it lives on the CPU (free there); None on a GPU (no host sync)."""
    return None if flag.is_cuda else bool(flag.any())


def _cut(sv, thr_k, lse_k, top_p):
    """Support threshold from a sorted (descending) prefix sv (B, K) of the tempered logits, given the top-k
    threshold thr_k (B,) and the log-normaliser lse_k (B,) of the top-k support. Returns (thr (B,), n (B,))."""
    probs = torch.exp(sv - lse_k[:, None]).masked_fill(sv < thr_k[:, None], 0.0)  # (B, K) top-k renormalised
    # mass before each sorted position = mass strictly above it for the first token of a tie; exclusive cumsum
    excl = torch.cat([torch.zeros_like(probs[:, :1]), torch.cumsum(probs, dim=-1)[:, :-1]], dim=-1)
    keep = (excl < top_p[:, None]) & (sv >= thr_k[:, None])  # a prefix of the sorted row
    n = keep.sum(-1).clamp(min=1)  # at least the maximum survives (top_p <= 0)
    thr = torch.where(top_p >= 1.0, thr_k, sv.gather(1, (n - 1)[:, None]).squeeze(1))
    return thr, n


def _thresholds(s, top_k, top_p, prefix=1024):
    """(B,) tempered-logit threshold of each row's support (keep s >= thr; -inf = no filter). A sort, reference
    only: first over the top `prefix` tokens (torch.topk), and over the whole row when some cut may lie beyond.
    s: (B, V) fp32 tempered logits; top_k (B,) int64; top_p (B,) fp32."""
    B, V = s.shape
    k = torch.where((top_k > 0) & (top_k < V), top_k, V)  # (B,) V = no top-k
    for K in ([prefix] if prefix < V else []) + [V]:
        sv = s.topk(K, dim=-1).values if K < V else s.sort(dim=-1, descending=True).values  # (B, K)
        thr_k = torch.where((k <= K) & (k < V), sv.gather(1, (k.clamp(max=K) - 1)[:, None]).squeeze(1), float("-inf"))
        lse_k = torch.logsumexp(s.masked_fill(s < thr_k[:, None], float("-inf")), dim=-1)
        thr, n = _cut(sv, thr_k, lse_k, top_p)
        # the prefix is enough unless a row's top-k or top-p cut may lie past it
        if K == V or _on_host((k > K) & (k < V) | (n >= K) & (top_p < 1.0)) is False:
            return thr
    raise AssertionError("unreachable")


def sample_ref(logits, temperature, top_k, top_p, seed, ids, steps):
    """Readable torch sampler (the CPU path). See the module docstring for the contract."""
    B, V = logits.shape
    dev = logits.device
    x = logits.float()  # (B, V)
    raw_lse = torch.logsumexp(x, dim=-1)
    greedy_tok = x.argmax(dim=-1)
    raw_at = lambda tok: x.gather(1, tok[:, None]).squeeze(1) - raw_lse
    if not torch.is_tensor(temperature) and temperature <= 0:  # all rows argmax: no noise needed
        return greedy_tok, torch.zeros(B, device=dev), raw_at(greedy_tok)

    temp = _rows(temperature, B, torch.float32, dev)
    greedy = temp <= 0
    s = x * torch.where(greedy, 1.0, 1.0 / temp)[:, None]  # (B, V) tempered logits
    k = _rows(top_k, B, torch.int64, dev)
    p = _rows(top_p, B, torch.float32, dev)
    filt = ((k > 0) & (k < V)) | (p < 1.0)
    if _on_host(filt) is not False:
        s = s.masked_fill(s < _thresholds(s, k, p)[:, None], float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    tok = gumbel_argmax(s, row_keys(seed, ids.long(), steps.long()))
    tok = torch.where(greedy, greedy_tok, tok)
    logprob = torch.where(greedy, 0.0, s.gather(1, tok[:, None]).squeeze(1) - lse)
    return tok, logprob, raw_at(tok)


# ----------------------------------------------------------------------------- Triton kernel
# Grid: one program per block of ROWS rows; every loop walks the vocabulary in (ROWS, BLOCK) tiles, so V is
# unbounded (128k and more). Thresholds live in "key" space: the fp32 bit pattern mapped to an int32 with the same
# order, so a binary search over keys finds an exact logit threshold in <= 32 passes and never sorts.

if triton is not None:
    @triton.jit
    def _mix32(x):  # uint32 -> uint32, the same steps as mix32 above (uint32 multiply wraps by itself)
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
    def _tile(logits_ptr, stride, rows, rmask, start, V, scale, BLOCK: tl.constexpr):
        """One (ROWS, BLOCK) tile: column ids, validity, raw fp32 logits x and tempered s (-inf outside)."""
        cols = start + tl.arange(0, BLOCK)  # (BLOCK,)
        valid = rmask[:, None] & (cols < V)[None, :]  # (ROWS, BLOCK)
        x = tl.load(logits_ptr + rows.to(tl.int64)[:, None] * stride + cols[None, :], mask=valid,
                    other=float("-inf")).to(tl.float32)
        return cols, valid, x, x * scale[:, None]

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
    def _support_pass(logits_ptr, stride, rows, rmask, V, scale, rkey, thr, R: tl.constexpr, BLOCK: tl.constexpr):
        """log-sum-exp of s and the Gumbel-max token over each row's support {key(s) >= thr}."""
        m = tl.full((R,), float("-inf"), tl.float32)
        l = tl.zeros((R,), tl.float32)
        best = tl.full((R,), float("-inf"), tl.float32)
        tok = tl.zeros((R,), tl.int32)
        for start in range(0, V, BLOCK):
            cols, valid, x, s = _tile(logits_ptr, stride, rows, rmask, start, V, scale, BLOCK)
            s = tl.where(valid & (_key(s) >= thr[:, None]), s, float("-inf"))
            m, l = _online_lse(m, l, s)
            best, tok = _argmax_update(best, tok, _gumbel_tile(s, cols, rkey), cols)
        return m + tl.log(l), tok

    @triton.jit
    def _sample_kernel(logits_ptr, stride, B, V, inv_t_ptr, top_k_ptr, top_p_ptr, rkey_ptr,
                       tok_ptr, logprob_ptr, raw_ptr, ROWS: tl.constexpr, BLOCK: tl.constexpr,
                       FILTER: tl.constexpr):
        rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)  # (ROWS,)
        rmask = rows < B
        inv_t = tl.load(inv_t_ptr + rows, mask=rmask, other=1.0)
        greedy = inv_t == 0.0  # temperature 0
        scale = tl.where(greedy, 1.0, inv_t)
        rkey = tl.load(rkey_ptr + rows, mask=rmask, other=0).to(tl.uint32)
        # pass 1: raw log-sum-exp and argmax, key range of s, and (if no filter) the answer itself
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
            cols, valid, x, s = _tile(logits_ptr, stride, rows, rmask, start, V, scale, BLOCK)
            mr, lr = _online_lse(mr, lr, x)
            amax, atok = _argmax_update(amax, atok, x, cols)
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
                    cols, valid, x, s = _tile(logits_ptr, stride, rows, rmask, start, V, scale, BLOCK)
                    cnt += tl.sum((valid & (_key(s) >= mid[:, None])).to(tl.int64), 1)
                ok = cnt >= k
                active = hi - lo > 1
                lo = tl.where(active & ok, mid, lo)
                hi = tl.where(active & ~ok, mid, hi)
            thr_k = lo
            m_s = amax * scale  # max of s (scale > 0 preserves the order); 0 for an all -inf row
            m_s = tl.where(m_s == float("-inf"), 0.0, m_s)
            z = tl.zeros((ROWS,), tl.float32)  # top-k mass, relative to the row max m
            for start in range(0, V, BLOCK):
                cols, valid, x, s = _tile(logits_ptr, stride, rows, rmask, start, V, scale, BLOCK)
                z += tl.sum(tl.where(valid & (_key(s) >= thr_k[:, None]), tl.exp(s - m_s[:, None]), 0.0), 1)
            # top-p: the smallest key t with mass{key > t} < p * z (mass over the top-k support)
            lo = thr_k - 1
            hi = tl.where((p < 1.0) & ~greedy & rmask, kmax.to(tl.int64), thr_k)
            while tl.max(hi - lo, 0) > 1:
                mid = lo + (hi - lo) // 2
                mass = tl.zeros((ROWS,), tl.float32)
                for start in range(0, V, BLOCK):
                    cols, valid, x, s = _tile(logits_ptr, stride, rows, rmask, start, V, scale, BLOCK)
                    key = _key(s)
                    inside = valid & (key > mid[:, None]) & (key >= thr_k[:, None])
                    mass += tl.sum(tl.where(inside, tl.exp(s - m_s[:, None]), 0.0), 1)
                below = mass < p * z
                active = hi - lo > 1
                hi = tl.where(active & below, mid, hi)
                lo = tl.where(active & ~below, mid, lo)
            lse, stok = _support_pass(logits_ptr, stride, rows, rmask, V, scale, rkey, hi, ROWS, BLOCK)
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


def sample_triton(logits, temperature, top_k, top_p, seed, ids, steps, rows=None, block=None):
    """The fused Triton sampler (same contract and bits as sample_ref). rows/block override the tile shape."""
    assert triton is not None, "triton is not installed"
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
    tok = torch.empty(B, dtype=torch.int64, device=dev)
    logprob = torch.empty(B, dtype=torch.float32, device=dev)
    raw = torch.empty(B, dtype=torch.float32, device=dev)
    R, BLOCK, warps = _blocks(V, rows, block)
    _sample_kernel[(triton.cdiv(B, R),)](logits, logits.stride(0), B, V, inv_t, top_k_t, top_p_t, rkey,
                                         tok, logprob, raw, ROWS=R, BLOCK=BLOCK, FILTER=filt, num_warps=warps,
                                         enable_fp_fusion=False)  # s + g rounded as in torch, no fma
    return tok, logprob, raw


# ----------------------------------------------------------------------------- dispatch

def sample(logits, temperature, top_k, top_p, seed, ids, steps):
    if backend(logits) == "triton":
        return sample_triton(logits, temperature, top_k, top_p, seed, ids, steps)
    return sample_ref(logits, temperature, top_k, top_p, seed, ids, steps)
