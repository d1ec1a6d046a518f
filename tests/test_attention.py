"""kernels/attention.py: the Triton flash attention (forward, LSE, dq/dk/dv) and split-KV decode kernels against
the torch references, run in the Triton interpreter (tests/conftest.py sets TRITON_INTERPRET=1).
bf16 flash attention is not checked: the interpreter has no bf16 tl.dot. Decode (no dot) is checked in bf16."""
import math

import pytest
import torch

import kernels
from kernels import attention as A
from kernels import attention_triton as AT
from conftest import run_py, tiny_gpt

SMALL = dict(fwd=(16, 16, 4, 2), dkdv=(16, 32, 4, 2), dq=(32, 16, 4, 2))  # block sizes that split T=100 into many blocks (all loop regions run)


def rel(a, b):
    """max abs error relative to the reference's max magnitude (floored: some exact gradients are 0, e.g. T=1)."""
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-2)).item()


def qkv_views(B, T, H, D, dtype, seed=0):
    """q, k, v as model.py makes them: non-contiguous views of one fused (B, T, 3, H, D) tensor."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, 3, H, D, generator=g).to(dtype).unbind(2)


def reference(q, k, v, do, causal):
    """float64 output, base-2 LSE (B, H, T) and gradients."""
    qd, kd, vd = (x.detach().double().requires_grad_() for x in (q, k, v))
    o = A.flash_attn_ref(qd, kd, vd, causal)
    s = torch.einsum("bthd,bshd->bhts", qd, kd) / math.sqrt(q.size(-1))
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
    lse = torch.logsumexp(s, -1) / math.log(2)
    return (o, lse, *torch.autograd.grad(o, (qd, kd, vd), do.double()))


def run_kernels(q, k, v, do, causal, blocks=None):
    """_fwd / _bwd into NaN-poisoned buffers: any element a kernel fails to write fails the comparison."""
    B, T, H, D = q.shape
    o, dq, dk, dv = (torch.full((B, T, H, D), float("nan"), dtype=q.dtype) for _ in range(4))
    lse = torch.full((B, H, T), float("nan"))
    AT._fwd(q, k, v, o, lse, causal, blocks)
    AT._bwd(q, k, v, o, lse, do, dq, dk, dv, causal, blocks)
    return o, lse, dq, dk, dv


@pytest.mark.parametrize("D", [16, 32, 64])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T", [1, 17, 64, 100])
def test_flash_fp32(T, causal, D):
    q, k, v = qkv_views(2, T, 2, D, torch.float32, seed=T + D)
    do = torch.randn(2, T, 2, D).transpose(0, 1).contiguous().transpose(0, 1)  # non-contiguous grad too
    got = run_kernels(q, k, v, do, causal)
    for name, a, b in zip(("o", "lse", "dq", "dk", "dv"), got, reference(q, k, v, do, causal)):
        assert rel(a, b) < 1e-3, (name, rel(a, b))


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T", [64, 100])
def test_flash_fp32_small_blocks(T, causal):
    """Many blocks per row: unmasked interior, causal band, boundary tail and skipped blocks all execute."""
    q, k, v = qkv_views(1, T, 3, 32, torch.float32, seed=1)
    do = torch.randn(1, T, 3, 32)
    got = run_kernels(q, k, v, do, causal, SMALL)
    for name, a, b in zip(("o", "lse", "dq", "dk", "dv"), got, reference(q, k, v, do, causal)):
        assert rel(a, b) < 1e-3, (name, rel(a, b))


@pytest.mark.parametrize("D", [8, 48, 128])
def test_flash_other_head_dims(D):
    """D=8 (tiny models) and 48 are padded to 16 / 64 inside the kernel; 128 is GPT-2-large-sized."""
    q, k, v = qkv_views(1, 33, 3, D, torch.float32, seed=D)
    do = torch.randn(1, 33, 3, D)
    got = run_kernels(q, k, v, do, True)
    for name, a, b in zip(("o", "lse", "dq", "dk", "dv"), got, reference(q, k, v, do, True)):
        assert rel(a, b) < 1e-3, (name, rel(a, b))


@pytest.mark.parametrize("causal", [True, False])
def test_flash_fp16(causal):
    """fp16 inputs, fp32 accumulation. The kernel rounds P (forward), then P and dS (backward) to fp16 before the
    second matmul and the result once more: each a relative error <= u = 2^-11 ~ 4.9e-4 per element, so a few u on
    the output (measured: <= 4.7e-4, torch's own fp16 path 7.7e-4). Bounds: 2e-3 (4u) forward, 3e-3 (6u) gradients."""
    T, D = 100, 64
    q, k, v = qkv_views(2, T, 2, D, torch.float16, seed=3)
    do = torch.randn(2, T, 2, D).half()
    for blocks in (None, SMALL):
        got = run_kernels(q, k, v, do, causal, blocks)
        for name, a, b, tol in zip(("o", "lse", "dq", "dk", "dv"), got, reference(q, k, v, do, causal),
                                   (2e-3, 1e-5, 3e-3, 3e-3, 3e-3)):
            assert rel(a, b) < tol, (name, rel(a, b))


def test_flash_autograd_dispatch(monkeypatch):
    """flash_attn with BOLT_KERNELS=triton through autograd: gradients reach the fused qkv leaf as in model.py."""
    monkeypatch.setattr(kernels, "CHOICE", "triton")
    B, T, H, D = 2, 45, 2, 16
    qkv = torch.randn(B, T, 3, H, D, requires_grad=True)
    do = torch.randn(B, T, H, D)
    (A.flash_attn(*qkv.unbind(2), causal=True) * do).sum().backward()
    ref = qkv.detach().clone().requires_grad_()
    (A.flash_attn_ref(*ref.unbind(2), causal=True) * do).sum().backward()
    assert rel(qkv.grad, ref.grad) < 1e-3


class FakeKernel:
    """Stands in for a Triton kernel on a GPU with 64 KB of shared memory (sm75): records each launch (grid, BLOCK_M,
    BLOCK_N, num_stages) and raises OutOfResources, as Triton does before launching, when need(...) exceeds it."""

    def __init__(self, need):
        self.need, self.calls = need, []  # need(BLOCK_M, BLOCK_N, num_stages) -> bytes

    def __getitem__(self, grid):
        from triton.runtime.errors import OutOfResources

        def launch(*args, BLOCK_M, BLOCK_N, num_stages, **meta):
            self.calls.append((grid, BLOCK_M, BLOCK_N, num_stages))
            if self.need(BLOCK_M, BLOCK_N, num_stages) > 65536:  # sm75
                raise OutOfResources(self.need(BLOCK_M, BLOCK_N, num_stages), 65536, "shared memory")
        return launch


def test_launch_out_of_shared_memory_falls_back():
    """Tiles too big for the GPU's shared memory run unpipelined, then as SMALL_TILES; the grid follows the tiles
    (T=100, B*H=6); a kernel that fits nowhere raises."""
    q = torch.zeros(2, 100, 3, 64)
    stages_only = FakeKernel(lambda bm, bn, s: 40960 * s)
    AT._launch(stages_only, (32, 128, 8, 3), 1, q, True)
    assert stages_only.calls == [((1, 6), 32, 128, 3), ((1, 6), 32, 128, 1)]
    tiles_too = FakeKernel(lambda bm, bn, s: 40 * bm * bn)
    AT._launch(tiles_too, (128, 64, 8, 3), 0, q, True)
    assert tiles_too.calls == [((1, 6), 128, 64, 3), ((1, 6), 128, 64, 1), ((7, 6), 16, 16, 1)]
    from triton.runtime.errors import OutOfResources
    with pytest.raises(OutOfResources):
        AT._launch(FakeKernel(lambda bm, bn, s: 10 ** 6), (32, 32, 8, 2), 0, q, True)


def ragged_cache(dtype, B=4, S=40, H=3, D=32, L=2, seed=0):
    """q (B, 1, H, D) as an unbind view; the cache as layer-1 slices of (L, B, S, H, D) like model.KVCache.
    Rows hold a single token, the full capacity, and two very different lengths."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, 1, 3, H, D, generator=g).to(dtype).unbind(2)[0]
    kc, vc = (torch.randn(L, B, S, H, D, generator=g).to(dtype)[1] for _ in range(2))
    return q, kc, vc, torch.tensor([1, S, 7, 23], dtype=torch.int32)[:B]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)])
@pytest.mark.parametrize("block_n,num_splits", [(64, None), (8, 3), (4, 5)])
def test_decode(dtype, tol, block_n, num_splits):
    """vs the reference in float64. fp16/bf16: the inputs are exact in fp32, only the output is rounded (2u)."""
    q, kc, vc, seqlens = ragged_cache(dtype)
    out = torch.full(q.shape, float("nan"), dtype=dtype)
    B, _, H, D = q.shape
    n, _ = AT._split_plan(B, H, kc.size(1), block_n, num_splits)
    assert n == (num_splits or 1)  # B*H=12 -> ~21 splits wanted, capped by S=40 to one 64-key block
    parts = (torch.full((B * H * n * AT._block_d(D),), float("nan")), torch.full((B * H * n,), float("nan")))
    AT._decode(q, kc, vc, seqlens, out, block_n, num_splits, parts)
    ref = A.decode_attn_ref(q.double(), kc.double(), vc.double(), seqlens)
    assert rel(out, ref) < tol
    # the garbage past each row's length must not matter
    kc2, vc2 = kc.clone(), vc.clone()
    for b, n_valid in enumerate(seqlens.tolist()):
        kc2[b, n_valid:], vc2[b, n_valid:] = 1e4, float("nan")
    out2 = torch.empty_like(out)
    AT._decode(q, kc2, vc2, seqlens, out2, block_n, num_splits)
    assert torch.equal(out, out2)


def test_decode_matches_flash_last_row(monkeypatch):
    """Decoding the last token of a sequence = the last row of causal attention over it."""
    monkeypatch.setattr(kernels, "CHOICE", "triton")
    q, k, v = qkv_views(2, 30, 2, 16, torch.float32)
    full = A.flash_attn(q, k, v, causal=True)
    step = A.decode_attn(q[:, -1:], k, v, torch.full((2,), 30, dtype=torch.int32))
    assert rel(step, full[:, -1:]) < 1e-5


def test_tiny_gpt_same_logits_both_backends(monkeypatch):
    """model.py with BOLT_KERNELS=triton vs torch: full-sequence logits, ragged prefill and cached decode."""
    import model
    gpt = tiny_gpt(0, block_size=32, vocab_size=50).eval()
    idx = torch.randint(0, 50, (3, 20))
    lengths = torch.tensor([20, 5, 12])

    def run(choice):
        monkeypatch.setattr(kernels, "CHOICE", choice)
        cache = model.KVCache(gpt.config, 3, 32, "cpu")
        with torch.no_grad():
            outs = [gpt(idx)[0], gpt(idx, cache=cache, rows=torch.arange(3), lengths=lengths)]
            for step in range(4):
                outs.append(gpt(idx[:, step:step + 1], cache=cache))
        return outs

    for a, b in zip(run("triton"), run("torch")):
        assert rel(a, b) < 1e-4


def test_import_without_interpreter():
    """No autotune or driver lookup at import: a CPU-only machine imports model.py with TRITON_INTERPRET unset
    (BOLT_KERNELS=torch) and runs a forward through it; forcing Triton on CPU then is a clear error."""
    code = ("import torch, kernels; from model import GPT, GPTConfig; from kernels.attention import flash_attn\n"
            "print(tuple(GPT(GPTConfig(n_layer=1))(torch.zeros(1, 3, dtype=torch.long)).shape))\n"
            "kernels.CHOICE = 'triton'\n"
            "try:\n    flash_attn(*torch.randn(3, 1, 4, 2, 16))\nexcept RuntimeError as e:\n    print(e)")
    r = run_py(["-c", code], env={"BOLT_KERNELS": "torch"}, unset=("TRITON_INTERPRET",), timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "(1, 3, 261)"
    assert "needs TRITON_INTERPRET=1" in r.stdout  # forcing Triton on CPU without the interpreter: a clear error
