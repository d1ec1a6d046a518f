"""kernels/sampling.py: the torch reference and the Triton kernel (interpreter, see conftest.py) against an
independent per-row implementation written here (sorted-list top-k / top-p, float64 log_softmax), a chi-square
test of the sampled frequencies, support, reproducibility and batch independence.
The interpreter runs each program's ~70 threshold-search passes in Python, so its cost is programs x passes:
the Triton cases keep few row blocks (B of 6-20 rows, or one big block via `rows`) and wide tiles, each <= 12 s
of CPU time here (the largest took 22-25 s before); the compiled kernel at full size (vocab 50,257, batch 256)
is bench_gpu.py's to check."""

import pytest
import torch

import kernels
from conftest import run_py
from kernels.sampling import _thresholds, mix32, row_keys, sample, sample_ref
from kernels.sampling_triton import sample_triton

pytestmark = pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # log(0) of padded rows (interpreter)

BACKENDS = {"torch": sample_ref, "triton": sample_triton}


def support(x, temperature, top_k, top_p):
    """Independent definition of one row's support (bool (V,)): temperature, then the k largest (ties kept), then
    every token whose top-k-renormalised mass strictly above it is < top_p. x: (V,) logits."""
    s = x.double() / temperature
    keep = torch.ones_like(s, dtype=torch.bool)
    if 0 < top_k < len(s):
        keep &= s >= s.sort(descending=True).values[top_k - 1]
    if top_p < 1.0:
        probs = torch.where(keep, torch.softmax(s.masked_fill(~keep, float("-inf")), 0), 0.0)
        above = (probs[None, :] * (s[None, :] > s[:, None])).sum(1)  # above[i] = mass of tokens above token i
        keep &= above < top_p
        keep |= s == s.max()  # top_p <= 0 still keeps the maximum
    return keep


def target_logprobs(x, temperature, top_k, top_p):
    """(V,) float64 log-probabilities of the distribution the sampler must draw from."""
    keep = support(x, temperature, top_k, top_p)
    return torch.log_softmax((x.double() / temperature).masked_fill(~keep, float("-inf")), 0)


def ids_steps(B, offset=0):
    return torch.arange(B, dtype=torch.int64) * 7919 + offset, torch.arange(B, dtype=torch.int64) % 13


PARAMS = [(1.0, 0, 1.0), (0.7, 0, 1.0), (1.0, 5, 1.0), (1.3, 0, 0.8), (0.8, 12, 0.6), (2.0, 1, 1.0), (1.0, 0, 0.0)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("V", [37, 1000])
def test_logprobs_exact(backend, V):
    torch.manual_seed(V)
    B = len(PARAMS)
    x = torch.randn(B, V) * 3
    x[:, 3] = float("-inf")  # a masked token
    ids, steps = ids_steps(B)
    cols = [torch.tensor([p[i] for p in PARAMS]) for i in range(3)]
    tok, logprob, raw = BACKENDS[backend](x, cols[0].float(), cols[1], cols[2].float(), 5, ids, steps)
    assert tok.dtype == torch.int64 and logprob.dtype == raw.dtype == torch.float32
    for b, (t, k, p) in enumerate(PARAMS):
        lq = target_logprobs(x[b], t, k, p)
        assert lq[tok[b]] > float("-inf"), "token outside the support"
        assert abs(logprob[b].item() - lq[tok[b]].item()) < 1e-5
        assert abs(raw[b].item() - torch.log_softmax(x[b].double(), 0)[tok[b]].item()) < 1e-5


def chi2(counts, logq):
    """Pearson chi-square of counts against probabilities exp(logq); cells with expectation < 5 are pooled."""
    expected = logq.exp() * counts.sum()
    big = expected >= 5
    obs = torch.cat([counts[big].double(), counts[~big].sum().double()[None]])
    exp = torch.cat([expected[big], expected[~big].sum()[None]])
    obs, exp = obs[exp > 0], exp[exp > 0]
    return ((obs - exp) ** 2 / exp).sum().item(), len(exp) - 1


def draws(fn, x, params, n, **kw):
    ids, steps = ids_steps(n, offset=11)
    return fn(x.expand(n, -1), *params, 1234, ids, steps, **kw)[0]


@pytest.mark.parametrize("V", [37, 1000])
@pytest.mark.parametrize("params", [(1.0, 0, 1.0), (0.8, 0, 0.9), (1.2, 20, 1.0)])
def test_frequencies_match_target(V, params):
    """>= 20k draws of one row: chi-square below df + 6 sqrt(2 df) (p ~ 1e-7 for a right sampler), while the
    same draws fail it against a slightly wrong temperature, so the test has power."""
    torch.manual_seed(0)
    x = torch.randn(V) * 2
    tok = draws(sample_ref, x, params, 20000)
    counts = torch.bincount(tok, minlength=V)
    stat, df = chi2(counts, target_logprobs(x, *params))
    assert stat < df + 6 * (2 * df) ** 0.5, (stat, df)
    wrong = (params[0] * 1.15,) + params[1:]
    stat_w, df_w = chi2(counts, target_logprobs(x, *wrong))
    assert stat_w > df_w + 6 * (2 * df_w) ** 0.5, (stat_w, df_w)


def test_frequencies_triton():
    """The kernel itself, 20k draws at V=37 (one big row block so the interpreter is quick)."""
    torch.manual_seed(1)
    x = torch.randn(37) * 2
    params = (0.9, 10, 0.95)
    tok = draws(sample_triton, x, params, 20000, rows=4096)
    stat, df = chi2(torch.bincount(tok, minlength=37), target_logprobs(x, *params))
    assert stat < df + 6 * (2 * df) ** 0.5, (stat, df)


@pytest.mark.parametrize("backend", BACKENDS)
def test_support_never_violated(backend):
    torch.manual_seed(2)
    V, n = 300, 1024
    x = torch.randn(V) * 2
    x[::7] = float("-inf")
    kw = {"rows": n} if backend == "triton" else {}
    for params in [(1.0, 3, 1.0), (1.5, 0, 0.5), (3.0, 40, 0.3), (1.0, 0, 1.0)]:
        tok = draws(BACKENDS[backend], x, params, n, **kw)
        assert support(x, *params)[tok].all(), params
        assert not torch.isinf(x[tok]).any()


@pytest.mark.parametrize("B,V,tile", [(10, 37, {}), (20, 1000, {"rows": 16}), (6, 1500, {"rows": 4, "block": 512})])
def test_triton_matches_torch(B, V, tile):
    """Same (seed, ids, steps) -> the same tokens from both paths; multi-tile rows and a partial row block."""
    torch.manual_seed(3)
    x = torch.randn(B, V) * 2.5
    ids, steps = ids_steps(B)
    temp = torch.rand(B) * 1.5
    temp[::5] = 0.0
    top_k = torch.randint(0, 60, (B,))
    top_p = torch.where(torch.rand(B) < 0.5, 1.0, torch.rand(B))
    for params in [(1.0, 0, 1.0), (0.7, 0, 1.0), (temp, top_k, top_p), (1.0, 25, 1.0), (0.9, 0, 0.7)]:
        a = sample_ref(x, *params, 99, ids, steps)
        b = sample_triton(x, *params, 99, ids, steps, **tile)
        assert torch.equal(a[0], b[0])
        torch.testing.assert_close(a[1], b[1], rtol=0, atol=1e-5)
        torch.testing.assert_close(a[2], b[2], rtol=0, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_logits(dtype):
    torch.manual_seed(4)
    x = (torch.randn(9, 200) * 3).to(dtype)
    ids, steps = ids_steps(9)
    a = sample_ref(x, 0.8, 10, 0.9, 7, ids, steps)
    b = sample_triton(x, 0.8, 10, 0.9, 7, ids, steps)
    assert torch.equal(a[0], b[0])
    torch.testing.assert_close(a[2], torch.log_softmax(x.float(), -1).gather(1, a[0][:, None])[:, 0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_reproducible_and_batch_independent(backend):
    """A row's draw depends on (seed, id, step) only: not on the call, the batch size, or its neighbours."""
    torch.manual_seed(5)
    fn = BACKENDS[backend]
    B, V = 16, 500
    x = torch.randn(B, V)
    ids, steps = ids_steps(B)
    temp, top_k, top_p = torch.full((B,), 1.0), torch.randint(0, 30, (B,)), torch.full((B,), 0.95)
    full = fn(x, temp, top_k, top_p, 3, ids, steps)
    assert torch.equal(full[0], fn(x, temp, top_k, top_p, 3, ids, steps)[0])
    perm = torch.randperm(B)[:7]
    sub = fn(x[perm], temp[perm], top_k[perm], top_p[perm], 3, ids[perm], steps[perm])
    assert torch.equal(sub[0], full[0][perm])
    torch.testing.assert_close(sub[1], full[1][perm], rtol=0, atol=1e-6)
    # another seed / step moves most draws (uniform logits: every row is a fresh uniform draw)
    u = torch.zeros(B, V)
    base = fn(u, 1.0, 0, 1.0, 3, ids, steps)[0]
    assert (fn(u, 1.0, 0, 1.0, 4, ids, steps)[0] != base).float().mean() > 0.9
    assert (fn(u, 1.0, 0, 1.0, 3, ids, steps + 1)[0] != base).float().mean() > 0.9


@pytest.mark.parametrize("backend", BACKENDS)
def test_temperature_zero_is_argmax(backend):
    torch.manual_seed(6)
    fn = BACKENDS[backend]
    x = torch.randn(6, 80)
    x[1, 10] = x[1, 50] = x[1].max() + 1  # a tie: the first index wins, as torch.argmax
    ids, steps = ids_steps(6)
    for temp in (0.0, torch.tensor([0.0, 0.0, 1.0, 0.0, 2.0, 0.0])):
        tok, logprob, raw = fn(x, temp, 5, 0.5, 0, ids, steps)
        greedy = torch.as_tensor(temp).expand(6) == 0
        assert torch.equal(tok[greedy], x.argmax(-1)[greedy]) and tok[1] == 10
        assert (logprob[greedy] == 0).all() and (logprob[~greedy] < 0).all()
        torch.testing.assert_close(raw, torch.log_softmax(x, -1).gather(1, tok[:, None])[:, 0])


def test_large_vocab_triton():
    """V = 128k + 5: many tiles (17 of 8192 columns: the default 2048 take 3x the interpreter's time), ragged
    last tile, top-k + top-p threshold search."""
    torch.manual_seed(7)
    V = 131077
    x = torch.randn(1, V) * 4
    ids, steps = ids_steps(1)
    for params in [(1.0, 0, 1.0), (0.9, 40, 0.8)]:
        a = sample_ref(x, *params, 1, ids, steps)
        b = sample_triton(x, *params, 1, ids, steps, block=8192)
        assert torch.equal(a[0], b[0])
        torch.testing.assert_close(a[1], b[1], rtol=0, atol=1e-5)


def test_reference_prefix_shortcut():
    """The torch path sorts only a top-`prefix` slice when every cut falls inside it; same thresholds as a full
    sort, for rows whose cut lies inside the prefix, past it, and rows without a filter."""
    torch.manual_seed(8)
    x = torch.randn(8, 200) * torch.tensor([8.0, 8, 8, 0.5, 0.5, 8, 0.5, 8])[:, None]
    top_k = torch.tensor([5, 0, 0, 0, 40, 0, 0, 3])
    top_p = torch.tensor([1.0, 0.5, 1.0, 0.9, 1.0, 0.99, 1.0, 0.2])
    full = _thresholds(x, top_k, top_p, prefix=10 ** 9)
    assert torch.equal(_thresholds(x, top_k, top_p, prefix=16), full)
    assert torch.equal(_thresholds(x[:3], top_k[:3], top_p[:3], prefix=16), full[:3])  # all inside: no full sort
    assert full[2] == float("-inf") and full[6] == float("-inf")


def test_hash_is_counter_based():
    """The noise key mixes every 32-bit half of seed, id and step, and mix32 stays within uint32."""
    x = torch.tensor([0, 1, 2 ** 32 - 1, 12345], dtype=torch.int64)
    assert ((mix32(x) >= 0) & (mix32(x) < 2 ** 32)).all() and len(set(mix32(x).tolist())) == 4
    ids = torch.tensor([5, 5 + 2 ** 32, 5, 5], dtype=torch.int64)
    steps = torch.tensor([0, 0, 2 ** 32, 0], dtype=torch.int64)
    keys = row_keys(9, ids, steps).tolist()
    assert len(set(keys)) == 3 and keys[0] == keys[3] and keys[0] != row_keys(9 + 2 ** 32, ids, steps)[0]


def test_dispatch_and_import_without_interpreter():
    code = ("import torch; from kernels.sampling import sample, sample_ref; x = torch.randn(3, 50); "
            "i = torch.arange(3); a = sample(x, 1.0, 0, 1.0, 0, i, i); b = sample_ref(x, 1.0, 0, 1.0, 0, i, i); "
            "assert torch.equal(a[0], b[0])")
    # the default choice only: BOLT_KERNELS=torch read at import is test_attention.py's test_import_without_interpreter
    r = run_py(["-c", code], env={"BOLT_KERNELS": ""}, unset=("TRITON_INTERPRET",))
    assert r.returncode == 0, r.stderr


def test_dispatch_env(monkeypatch):
    x = torch.randn(4, 64)
    ids, steps = ids_steps(4)
    for choice in ("torch", "triton"):
        monkeypatch.setattr(kernels, "CHOICE", choice)
        tok, logprob, _ = sample(x, 0.9, 8, 0.9, 2, ids, steps)
        assert torch.equal(tok, BACKENDS[choice](x, 0.9, 8, 0.9, 2, ids, steps)[0])
    monkeypatch.setattr(kernels, "CHOICE", "cuda")
    with pytest.raises(ValueError):
        sample(x, 1.0, 0, 1.0, 0, ids, steps)


def banned_target(x, banned, temperature, top_k, top_p):
    """(V,) float64 log-probabilities with the banned ids' logits -inf first, then the target above."""
    xm = x.clone()
    xm[[t for t in banned if t >= 0]] = float("-inf")
    return target_logprobs(xm, temperature, top_k, top_p)


@pytest.mark.parametrize("backend", BACKENDS)
def test_banned_ids_have_zero_probability(backend):
    """Banned ids (per row, -1 padding) are never drawn, also when they dominate the row, at temperature 0 too;
    logprob is under the masked distribution (a direct log_softmax), raw_logprob under the unmasked one."""
    torch.manual_seed(9)
    B, V = len(PARAMS), 37
    x = torch.randn(B, V)
    banned = torch.tensor([[3, 5, 7, -1], [0, -1, -1, -1], [5, 6, 30, 36]] * 3)[:B]
    hit = torch.stack([torch.isin(torch.arange(V), row) for row in banned])  # (B, V)
    x += 25.0 * hit  # without the ban these would win every draw
    ids, steps = ids_steps(B)
    cols = [torch.tensor([p[i] for p in PARAMS]) for i in range(3)]
    tok, logprob, raw = BACKENDS[backend](x, cols[0].float(), cols[1], cols[2].float(), 5, ids, steps, banned)
    for b, params in enumerate(PARAMS):
        assert tok[b].item() not in banned[b].tolist()
        lq = banned_target(x[b], banned[b].tolist(), *params)
        assert abs(logprob[b].item() - lq[tok[b]].item()) < 1e-5
        assert abs(raw[b].item() - torch.log_softmax(x[b].double(), 0)[tok[b]].item()) < 1e-5
    free = BACKENDS[backend](x, cols[0].float(), cols[1], cols[2].float(), 5, ids, steps)[0]
    assert all(free[b].item() in banned[b].tolist() for b in range(B))  # the test has power
    for temp in (0.0, torch.tensor([0.0, 1.0] * 3 + [0.0])):
        g = BACKENDS[backend](x, temp, 0, 1.0, 5, ids, steps, banned)[0]
        greedy = torch.as_tensor(temp).expand(B) == 0
        assert torch.equal(g[greedy], x.masked_fill(hit, float("-inf")).argmax(-1)[greedy])


def test_banned_frequencies():
    """Masked draws follow the masked distribution (chi-square, as test_frequencies_match_target)."""
    torch.manual_seed(10)
    x = torch.randn(37) * 2
    banned = [int(x.argmax()), 4, 11]
    n = 20000
    ids, steps = ids_steps(n, offset=11)
    tok = sample_ref(x.expand(n, -1), 0.9, 0, 0.95, 1234, ids, steps, torch.tensor([banned]).expand(n, -1))[0]
    stat, df = chi2(torch.bincount(tok, minlength=37), banned_target(x, banned, 0.9, 0, 0.95))
    assert stat < df + 6 * (2 * df) ** 0.5, (stat, df)


@pytest.mark.parametrize("B,V,tile", [(8, 37, {"rows": 8}), (4, 300, {"rows": 4, "block": 128})])
def test_banned_triton_matches_torch(B, V, tile):
    """Same tokens and log-probs from both paths with a ragged per-row banned set, filters on and off, in one
    tile and over three (one row block each: the interpreter is slow)."""
    torch.manual_seed(11)
    x = torch.randn(B, V) * 2.5
    ids, steps = ids_steps(B)
    banned = torch.randint(0, V, (B, 3))
    banned[::3, 1:] = -1
    x[torch.arange(B), banned[:, 0]] += 30.0  # a dominant banned id: the kernel's max must skip it
    temp = torch.rand(B) * 1.5
    temp[::4] = 0.0
    for params in [(1.0, 0, 1.0), (temp, torch.randint(0, 20, (B,)), torch.full((B,), 0.8)), (0.9, 5, 0.7)]:
        a = sample_ref(x, *params, 99, ids, steps, banned)
        b = sample_triton(x, *params, 99, ids, steps, banned, **tile)
        assert torch.equal(a[0], b[0])
        torch.testing.assert_close(a[1], b[1], rtol=0, atol=1e-5)
        torch.testing.assert_close(a[2], b[2], rtol=0, atol=1e-5)
