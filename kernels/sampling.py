"""Batched sampling for generation: temperature, top-k, top-p, Gumbel-max on counter-based noise.

sample(logits, temperature, top_k, top_p, seed, ids, steps, banned=None) -> (token, logprob, raw_logprob), (B,):
- logits (B, V) any float dtype (computed in fp32). temperature / top_k / top_p: python scalars or (B,) tensors;
  temperature 0 = argmax, top_k 0 = off, top_p 1.0 = off. seed: python int; ids, steps: (B,) int64.
- banned: None or (B, NB) int64 token ids per row, -1 = no id (padding): their logits become -inf before
  anything else, so they have zero probability and argmax (temperature 0) skips them too.
- logprob: log-prob of the token under the distribution actually sampled from (banned ids masked, temperature,
  then top-k, then top-p on the renormalised top-k distribution) -- this is log q for BoLT's importance weights;
  0 for argmax rows.
- raw_logprob: log-prob under the untempered, unfiltered, unmasked log_softmax(logits) (the model's own).
Support semantics (thresholds, so ties are kept together): top-k keeps every token whose tempered logit is >= the
k-th largest; top-p keeps a token iff the top-k-renormalised mass of tokens strictly above it is < top_p.

The noise for token t of a row is a 32-bit integer hash of (seed, request id, step, t), the same bits in torch and
Triton, so a draw never depends on the backend, the batch it ran in, the rank or a resume. Sampling is Gumbel-max:
argmax over the support of s_t - log(-log u_t), s = logits / temperature (gpt-fast / vLLM use the equivalent
exponential race). The Triton kernel follows FlashInfer's sorting-free idea (threshold search instead of a sort),
made exact so the renormalised log-probability can be returned (FlashInfer returns none).

`sample` dispatches through kernels/__init__.py `backend`: Triton on CUDA (kernels/sampling_triton.py, imported
only then: triton is optional on CPU machines), torch on CPU, BOLT_KERNELS overrides.
"""
import torch

from kernels import backend

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


def ban(x, banned):
    """x (B, V) with each row's banned ids set to -inf; banned (B, NB) int64, -1 = padding (no id)."""
    B, V = x.shape
    hit = torch.zeros(B, V + 1, dtype=torch.bool, device=x.device)  # column V takes the padding
    hit.scatter_(1, torch.where(banned >= 0, banned, V).to(x.device), True)
    return x.masked_fill(hit[:, :V], float("-inf"))


def sample_ref(logits, temperature, top_k, top_p, seed, ids, steps, banned=None):
    """Readable torch sampler (the CPU path). See the module docstring for the contract."""
    B, V = logits.shape
    dev = logits.device
    x = logits.float()  # (B, V)
    raw_lse = torch.logsumexp(x, dim=-1)
    raw_at = lambda tok: x.gather(1, tok[:, None]).squeeze(1) - raw_lse
    xm = x if banned is None else ban(x, banned)  # (B, V) what is sampled from
    greedy_tok = xm.argmax(dim=-1)
    if not torch.is_tensor(temperature) and temperature <= 0:  # all rows argmax: no noise needed
        return greedy_tok, torch.zeros(B, device=dev), raw_at(greedy_tok)

    temp = _rows(temperature, B, torch.float32, dev)
    greedy = temp <= 0
    s = xm * torch.where(greedy, 1.0, 1.0 / temp)[:, None]  # (B, V) tempered logits
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


# ----------------------------------------------------------------------------- dispatch

def sample(logits, temperature, top_k, top_p, seed, ids, steps, banned=None):
    if backend(logits) == "triton":
        from kernels.sampling_triton import sample_triton
        return sample_triton(logits, temperature, top_k, top_p, seed, ids, steps, banned)
    return sample_ref(logits, temperature, top_k, top_p, seed, ids, steps, banned)
