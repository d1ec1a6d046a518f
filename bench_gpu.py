"""The GPU check: Triton kernels compiled (not interpreted), the engine and train.py on one CUDA GPU, one line per
check and a tally; each speed a ratio against a baseline timed in this process. `python bench.py gpu` is the same.
  python bench_gpu.py --json out/gpu.json                      # every check, about 5 minutes on one GPU
  python bench_gpu.py --table out/gpu.json --readme README.md  # that JSON -> the README's GPU table
Correctness checks run first, --jobs at once in worker processes (Triton's ~40 compilations overlap on the CPU),
then the speed checks one by one here, timed by CUDA events after warm-up calls (no compilation in any timing).
Needs torch >= 2.4, triton >= 3.0 (imported by the checks only); installs nothing; transformers is optional. Exit
code 0: nothing failed; 1: a check failed or raised; 2: a refusal."""
import argparse
import contextlib
import io
import json
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time

import torch

import bench
import bench_memory
import kernels
import train as tr
from data.loader import Rows, open_corpus
from data.tokenizer import get_tokenizer
from kernels.attention import decode_attn_ref, flash_attn_ref
from kernels.sampling import sample_ref
from model import GPT, GPTConfig
from sample import generate

FLASH_TOL = {"fp32": 1e-4, "fp16": 4e-3, "bf16": 3e-2}  # max error / max |float64 reference| (or 2x SDPA's own)
DECODE_TOL = {"fp32": 2e-5, "fp16": 2e-3, "bf16": 1.6e-2}  # decode rounds only its output: 2u
GPT2 = dict(block_size=1024, vocab_size=50257, n_layer=12, n_head=12, n_embd=768)  # GPT-2 124M's shape
TABLE = ("<!-- gpu table: start -->", "<!-- gpu table: end -->")


class Skip(Exception):
    """A check this machine cannot run (bf16 before sm80, no transformers): not a failure."""


def _dtype(name):
    """torch dtype of 'fp32' | 'fp16' | 'bf16' | 'low' (the speed checks': bf16 as train.py's autocast, fp16 before
    sm80); Skip for bf16 before sm80 (no bf16 tensor cores)."""
    cap = torch.cuda.get_device_capability()
    name = ("bf16" if cap >= (8, 0) else "fp16") if name == "low" else name
    if name == "bf16" and cap < (8, 0):
        raise Skip(f"bf16 needs sm80 or newer, this GPU is sm{cap[0]}{cap[1]}")
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def rel(a, b):
    """max |a - b| / max |b| (floored at 1e-2: some exact gradients are 0); inf if a holds a NaN."""
    e = ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-2)).item()
    return math.inf if e != e else e


def cuda_ms(fn, ctx=contextlib.nullcontext):
    """Median ms of fn() by triton.testing.do_bench (CUDA events; compilation, warm-up left out; L2 flushed)."""
    from triton.testing import do_bench
    with ctx():
        return do_bench(fn, return_mode="median")


def compare(ours, base, base_ctx=contextlib.nullcontext):
    """(ours ms, baseline ms), each the best of 3 interleaved rounds, so clock drift hits both alike."""
    a, b = zip(*[(cuda_ms(ours), cuda_ms(base, base_ctx)) for _ in range(3)])
    return min(a), min(b)


def speed(ours, ours_value, baseline, baseline_value, unit, detail):
    """A speed check's result; ratio > 1 means ours is faster (unit 'ms': lower is better, others: higher)."""
    ratio = baseline_value / ours_value if unit == "ms" else ours_value / baseline_value
    return dict(ok=True, detail=detail, ours=ours, ours_value=ours_value, baseline=baseline,
                baseline_value=baseline_value, unit=unit, ratio=ratio)


def _sdpa_ctx(run):
    """(context, label) of the SDPA baseline: its flash backend if this torch has it and run() runs on it, else auto."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel  # torch >= 2.3
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            run()
        return (lambda: sdpa_kernel(SDPBackend.FLASH_ATTENTION)), "SDPA flash backend"
    except (ImportError, RuntimeError):  # no such API, or no flash kernel for these inputs on this GPU
        return contextlib.nullcontext, "SDPA default backend"


def _grads(f, q, k, v, do, causal, dtype=None):
    """(o, dq, dk, dv) of f(q, k, v, causal) for output gradient do, computed in dtype (default: q's)."""
    q, k, v = (x.detach().to(dtype or x.dtype).requires_grad_() for x in (q, k, v))
    o = f(q, k, v, causal)
    return (o.detach(), *torch.autograd.grad(o, (q, k, v), do.to(o.dtype)))


def check_flash(dt, D, causal):
    """Flash attention fwd + bwd (o, dq, dk, dv; q, k, v views of a fused qkv, as model.py's) vs SDPA in float64 at
    T = 1, 33, 1000, 2048: each error <= the dtype's tolerance or 2x SDPA's own in this dtype (<= 10x the tolerance)."""
    from kernels.attention_triton import flash_attn_triton
    dtype = _dtype(dt)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 dots in ieee, as the float64 comparison assumes
    errs = []  # (output, T, ours, SDPA in dt)
    for T in (1, 33, 1000, 2048):
        g = torch.Generator(device="cuda").manual_seed(T + D)
        q, k, v = torch.randn(2, T, 3, 4, D, device="cuda", generator=g).to(dtype).unbind(2)  # (B, T, H, D)
        do = torch.randn(2, T, 4, D, device="cuda", generator=g).to(dtype)
        ref = [torch.cat(p, 2) for p in zip(*[_grads(flash_attn_ref, *(x[:, :, h:h + 1] for x in (q, k, v, do)),
                                                     causal, torch.float64) for h in range(4)])]  # head by head
        ours, same = _grads(flash_attn_triton, q, k, v, do, causal), _grads(flash_attn_ref, q, k, v, do, causal)
        errs += [(n, T, rel(a, r), rel(s, r)) for n, a, s, r in zip(("o", "dq", "dk", "dv"), ours, same, ref)]
    bound = lambda s: max(FLASH_TOL[dt], min(2 * s, 10 * FLASH_TOL[dt]))  # SDPA's own error counts up to 10 tol
    n, T, e, s = max(errs, key=lambda x: x[2])
    return dict(ok=all(e <= bound(s) for _, _, e, s in errs), detail=f"worst {n} at T={T}: {e:.1e} (SDPA in {dt}: "
                f"{s:.1e}, bound {bound(s):.1e}) over T=1,33,1000,2048 x o,dq,dk,dv")


def check_decode(dt):
    """Split-KV decode on a ragged layer slice of a cache (lengths 1, S, 63/64/65...; D 64 at S 1000, D 128 at S
    2048) vs SDPA in float64; then 1e4 / NaN past each row's length must not change the output by a bit."""
    from kernels.attention_triton import decode_attn_triton
    dtype, worst, same = _dtype(dt), 0.0, True
    for S, D in ((1000, 64), (2048, 128)):
        g = torch.Generator(device="cuda").manual_seed(S)
        q = torch.randn(8, 1, 3, 12, D, device="cuda", generator=g).to(dtype).unbind(2)[0]  # (B, 1, H, D)
        kc, vc = (torch.randn(2, 8, S, 12, D, device="cuda", generator=g).to(dtype)[1] for _ in range(2))
        lens = torch.tensor([1, S, 7, S // 2, 63, 64, 65, S - 1], dtype=torch.int32, device="cuda")
        out = decode_attn_triton(q, kc, vc, lens)
        worst = max(worst, rel(out, decode_attn_ref(q.double(), kc.double(), vc.double(), lens)))
        for b, n in enumerate(lens.tolist()):
            kc[b, n:], vc[b, n:] = 1e4, float("nan")
        same &= torch.equal(out, decode_attn_triton(q, kc, vc, lens))
    return dict(ok=worst <= DECODE_TOL[dt] and same, detail=f"max rel err {worst:.1e} (tol {DECODE_TOL[dt]:.0e}); "
                f"{'unchanged' if same else 'CHANGED'} by garbage past each row's length")


def check_sampler_equal():
    """The fused sampler vs the torch reference, vocab 50,257, batch 256, fp32 / bf16 logits, scalar and per-row
    settings (a fifth greedy): the same tokens but <= 0.1% near-ties (libdevice's log vs torch's), log-probs 1e-4."""
    from kernels.sampling_triton import sample_triton
    B, V = 256, 50257
    g = torch.Generator(device="cuda").manual_seed(0)
    u = lambda: torch.rand(B, device="cuda", generator=g)
    rows = (u() * 1.5, torch.randint(0, 200, (B,), device="cuda", generator=g), torch.where(u() < 0.5, 1.0, u()))
    rows[0][::5] = 0.0
    n, same, diffs = 0, 0, [0.0]
    for dt in ("fp32", "low"):
        x = (torch.randn(B, V, device="cuda", generator=g) * 3).to(_dtype(dt))
        for i, p in enumerate(((1.0, 0, 1.0), (0.7, 0, 1.0), (1.0, 50, 1.0), (0.8, 0, 0.9), (1.2, 100, 0.8), rows)):
            ids, steps = torch.arange(B, device="cuda") * 7919 + i, torch.full((B,), i, device="cuda")
            a, b = sample_ref(x, *p, 1234, ids, steps), sample_triton(x, *p, 1234, ids, steps)
            eq = a[0] == b[0]
            n, same = n + B, same + int(eq.sum())
            diffs += [(a[j] - b[j]).abs().masked_fill(~eq, 0).max().item() for j in (1, 2)]  # log q, raw log p
    diff = max(diffs, key=lambda d: math.inf if d != d else d)
    return dict(ok=n - same <= max(1, n // 1000) and diff <= 1e-4,
                detail=f"{same}/{n} tokens equal; log-probs (sampled, raw) within {diff:.1e}")


def target_logq(x, temperature, top_k, top_p):
    """(V,) float64 log-probabilities the sampler must draw from, by a full sort: temperature, the top_k largest,
    then the tokens whose renormalised mass strictly above them is < top_p (random logits have no ties)."""
    s = x.double() / temperature
    sv, si = s.sort(descending=True)
    keep = torch.ones_like(sv, dtype=torch.bool)
    if 0 < top_k < len(s):
        keep[top_k:] = False
    if top_p < 1.0:
        p = torch.softmax(sv.masked_fill(~keep, -math.inf), 0)
        keep &= torch.cumsum(p, 0) - p < top_p
    out = torch.full_like(s, -math.inf)
    out[si] = torch.log_softmax(sv.masked_fill(~keep, -math.inf), 0)
    return out


def chi2(counts, logq):
    """Pearson chi-square of counts against probabilities exp(logq), cells expecting < 5 pooled -> (stat, df)."""
    exp = logq.exp() * counts.sum()
    big = exp >= 5
    obs, exp = torch.cat([counts[big], counts[~big].sum()[None]]), torch.cat([exp[big], exp[~big].sum()[None]])
    obs, exp = obs[exp > 0], exp[exp > 0]
    return ((obs - exp) ** 2 / exp).sum().item(), len(exp) - 1


def check_sampler_dist():
    """25,600 draws (100 calls of batch 256, distinct ids) of one vocab-50,257 row per setting: chi-square against
    the exact float64 distribution < df + 6 sqrt(2 df) (p ~ 1e-7 for a right sampler), > it for a 15% hotter
    temperature (power), every log-prob within 1e-4 of the exact; TV: total variation (sampling noise included)."""
    from kernels.sampling_triton import sample_triton
    B, V = 256, 50257
    x = torch.randn(V, device="cuda", generator=torch.Generator(device="cuda").manual_seed(1)) * 2
    xs, ok, parts = x.repeat(B, 1), True, []
    for p in ((1.0, 0, 1.0), (0.8, 0, 0.9), (0.5, 50, 1.0), (1.2, 200, 0.8)):  # top-50 at T=1: too little power
        logq, counts, lp = target_logq(x, *p), torch.zeros(V, dtype=torch.float64, device="cuda"), 0.0
        for c in range(100):
            ids = torch.arange(B, device="cuda") + B * c
            tok, logprob, _ = sample_triton(xs, *p, 99, ids, torch.full((B,), c, device="cuda"))
            counts += torch.bincount(tok, minlength=V)
            lp = max(lp, (logprob.double() - logq[tok]).abs().nan_to_num(math.inf).max().item())
        (stat, df), (hot, df_h) = chi2(counts, logq), chi2(counts, target_logq(x, p[0] * 1.15, *p[1:]))
        ok &= stat < df + 6 * (2 * df) ** 0.5 and hot > df_h + 6 * (2 * df_h) ** 0.5 and lp <= 1e-4
        tv = 0.5 * (counts / counts.sum() - logq.exp()).abs().sum().item()
        parts.append(f"T,k,p={p}: chi2 {stat:.0f}/df {df}, hotter {hot:.0f}/{df_h}, TV {tv:.3f}, lp {lp:.0e}")
    return dict(ok=ok, detail="; ".join(parts))


def check_engine_greedy():
    """sample.generate, greedy, GPT-2-124M shape, random fp32 weights, 32 prompts of 1-300 tokens x 48 new: Triton vs
    the torch path (kernels.CHOICE); rows may part only at a near-tie (the torch path's two logits within 1e-3)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    model = GPT(GPTConfig(**GPT2)).cuda().eval()
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 50257, (n,), generator=g).tolist() for n in torch.randint(1, 301, (32,), generator=g)]
    choice, outs, ties, bad = kernels.CHOICE, {}, 0, 0
    try:
        for c in ("triton", "torch"):
            kernels.CHOICE = c
            outs[c] = [o["tokens"] for o in generate(model, prompts, 48, temperature=0.0)]
        for p, a, b in zip(prompts, outs["triton"], outs["torch"]):
            if a != b:  # the torch path's logits where the rows part (kernels.CHOICE is 'torch' here)
                j = next(i for i in range(len(a)) if a[i] != b[i])
                with torch.no_grad():
                    logits = model(torch.tensor([p + b[:j]], device="cuda"))[0, -1]
                near = (logits[a[j]] - logits[b[j]]).abs().item() < 1e-3
                ties, bad = ties + near, bad + (not near)
    finally:
        kernels.CHOICE = choice
    return dict(ok=bad == 0, detail=f"{len(prompts) - ties - bad}/{len(prompts)} rows identical over 48 tokens; "
                                    f"{ties} part at a near-tie, {bad} elsewhere")


# ----------------------------------------------------------------------------- speed

def speed_flash(B, T, H, D):
    """Flash attention forward + backward, causal, bf16 (fp16 before sm80), on fused-qkv views: Triton vs SDPA (its
    flash backend where available) in TFLOP/s, 4 B H T^2 D / 2 FLOPs forward, x 3.5 with the backward."""
    from kernels.attention_triton import flash_attn_triton
    dtype = _dtype("low")
    qkv = torch.randn(B, T, 3, H, D, device="cuda", dtype=dtype, requires_grad=True)
    do = torch.randn(B, T, H, D, device="cuda", dtype=dtype)
    step = lambda f: lambda: torch.autograd.grad(f(*qkv.unbind(2), True), qkv, do)
    ctx, label = _sdpa_ctx(step(flash_attn_ref))
    ours, base = compare(step(flash_attn_triton), step(flash_attn_ref), ctx)
    tflop = 3.5 * 2 * B * H * T * T * D * 1e-9  # per ms -> TFLOP/s
    return speed("Triton flash attention", tflop / ours, label, tflop / base, "TFLOP/s",
                 f"{str(dtype)[6:]}, causal, fwd+bwd, (B, T, H, D) = ({B}, {T}, {H}, {D}): {ours:.2f} vs {base:.2f} ms")


def speed_decode(B, S, H, D):
    """Split-KV decode, lengths uniform in 1..S, vs SDPA with a padding mask, in GB/s of the K and V rows hold."""
    from kernels.attention_triton import decode_attn_triton
    dtype = _dtype("low")
    q = torch.randn(B, 1, H, D, device="cuda", dtype=dtype)
    kc, vc = (torch.randn(B, S, H, D, device="cuda", dtype=dtype) for _ in range(2))
    lens = torch.randint(1, S + 1, (B,), device="cuda", dtype=torch.int32)
    ours, base = compare(lambda: decode_attn_triton(q, kc, vc, lens), lambda: decode_attn_ref(q, kc, vc, lens))
    gb = 2 * lens.sum().item() * H * D * kc.element_size() * 1e-6  # per ms -> GB/s
    return speed("Triton split-KV decode", gb / ours, "SDPA + mask", gb / base, "GB/s",
                 f"{str(dtype)[6:]}, B={B} S={S} H={H} D={D}: {ours:.3f} vs {base:.3f} ms")


def speed_sampler(*p):
    """The fused sampler at (temperature, top_k, top_p) = p vs bench.py's torch sort sampler, B=256, V=50,257."""
    from kernels.sampling_triton import sample_triton
    x, ids = torch.randn(256, 50257, device="cuda") * 3, torch.arange(256, device="cuda")
    ours, base = compare(lambda: sample_triton(x, *p, 0, ids, ids), lambda: bench._naive_sampler(x, *p))
    return speed("Triton sampler", ours, "torch sort-based sampler", base, "ms", f"B=256 V=50257 T,k,p={p}")


def speed_engine():
    """E-step sampling at GPT-2-124M shape, random weights, bf16 (fp16 before sm80), 32 prompts of 64-256 tokens x
    K=4 samples of 64 tokens at temperature 1: sample.generate (one batch of 128 rows) vs Hugging Face generate
    (do_sample, num_return_sequences=4, its default attention), tokens/s, each after an identical warm-up run."""
    try:
        import transformers
    except ImportError:
        raise Skip("transformers is not importable here: sample.generate vs HF generate not measured") from None
    N, K, M, dtype = 32, 4, 64, _dtype("low")
    torch.manual_seed(0)
    ours = GPT(GPTConfig(**GPT2)).to("cuda", dtype).eval()
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config()).to("cuda", dtype).eval()
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 50257, (n,), generator=g).tolist() for n in torch.randint(64, 257, (N,), generator=g)]
    T, lens = max(map(len, prompts)), torch.tensor([len(p) for p in prompts])
    mask = (torch.arange(T)[None, :] >= (T - lens)[:, None]).long()  # left padding, as transformers expects
    idx = torch.zeros(N, T, dtype=torch.long).masked_scatter_(mask.bool(), torch.tensor(sum(prompts, [])))
    kw = dict(max_new_tokens=M, min_new_tokens=M, do_sample=True, num_return_sequences=K, top_k=0, top_p=1.0,
              temperature=1.0, pad_token_id=0, eos_token_id=None)
    rows, secs = [p for p in prompts for _ in range(K)], []
    with torch.inference_mode():
        for run in (lambda: generate(ours, rows, M, temperature=1.0, ids=range(N * K), seed=1, batch_size=N * K),
                    lambda: hf.generate(input_ids=idx.cuda(), attention_mask=mask.cuda(), **kw)):
            run()  # warm-up: Triton compilation, cuBLAS and allocator set-up
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            run()
            torch.cuda.synchronize()
            secs.append(time.perf_counter() - t0)
    return speed("sample.generate", N * K * M / secs[0], f"HF generate (transformers {transformers.__version__})",
                 N * K * M / secs[1], "tok/s", f"{str(dtype)[6:]}, {N} prompts x K={K}, {M} new tokens")


def _plain_loop(cfg, tok, docs):
    """A minimal loop on train.py's model, optimizer (fused AdamW), batches and lr schedule for cfg, in bf16
    autocast, each step timed as train.py times its own (wall clock, first step left out) -> (tok/s, final loss)."""
    model = tr.build_model(cfg, tok).cuda()
    opt, _ = tr.make_optimizer(model, cfg, torch.device("cuda"))
    rows, busy = Rows(tok, docs, cfg.layout, cfg.seed, cfg.block_size), 0.0
    for step in range(cfg.max_steps):
        t0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = tr.lr_at(step, cfg)
        x, y = (torch.from_numpy(t).to("cuda", non_blocking=True) for t in rows.next_rows(cfg.batch_size))
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        busy += (time.perf_counter() - t0) if step else 0.0
    return (cfg.max_steps - 1) * cfg.batch_size * cfg.block_size / busy, loss.item()


def speed_train(compile):
    """train.py (optionally --compile) at GPT-2-124M's body (12 x 768, T=1024, 8 rows a step, bf16; byte vocabulary:
    no BPE files needed) vs the plain loop above: tok/s as train.py reports it; MFU against an 8192^3 bf16 matmul."""
    if _dtype("low") != torch.bfloat16:
        raise Skip("train.py's bf16 autocast needs sm80 or newer")
    torch.backends.cuda.matmul.allow_tf32 = True  # as train.py sets it
    tok = get_tokenizer("bytes")
    with tempfile.TemporaryDirectory() as tmp:
        data = bench_memory._memory_corpus(os.path.join(tmp, "docs.jsonl"), n_docs=100, doc_tokens=4000)
        cfg = tr.TrainConfig(data=data, out=os.path.join(tmp, "out"), n_layer=12, n_head=12, n_embd=768,
                             block_size=1024, batch_size=8, max_steps=20, warmup_steps=2, log_every=0, eval_every=0,
                             ckpt_every=0, dtype="bf16", compile=compile, device="cuda")
        base, base_loss = _plain_loop(cfg, tok, open_corpus(tok, data))
        torch.cuda.empty_cache()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # train()'s config and model lines
            res = tr.train(cfg)
        took = time.perf_counter() - t0
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    peak = 2 * 8192 ** 3 / (cuda_ms(lambda: a @ a) * 1e-3)
    n = 12 * 12 * 768 ** 2 + 320 * 768  # params as nanoGPT counts them: 12 C^2 a layer, wte (biases, norms < 0.2%)
    flops, ours = 6 * n + 12 * 12 * 768 * 1024, res["tok_per_s"]
    return speed("train.py" + (" --compile" if compile else ""), ours, "plain eager PyTorch loop", base, "tok/s",
                 f"bf16, 8192 tokens/step, 19 steps timed: MFU {ours * flops / peak:.1%} vs {base * flops / peak:.1%} "
                 f"of {peak / 1e12:.0f} TFLOP/s (bf16 matmul here); final loss {res['train_loss']:.3f} vs "
                 f"{base_loss:.3f}; train() took {took:.0f} s")


def all_checks():
    """[(name, fn, args, parallel)] in run order; the parallel ones (correctness) may run in worker processes."""
    return [(f"flash {dt} D{D} {'causal' if c else 'full'}", check_flash, (dt, D, c), True)
            for dt in ("fp32", "fp16", "bf16") for D in (64, 128) for c in (True, False)] + [
        (f"decode {dt} ragged", check_decode, (dt,), True) for dt in ("fp32", "fp16", "bf16")] + [
        ("sampler = torch reference", check_sampler_equal, (), True),
        ("sampler distribution", check_sampler_dist, (), True),
        ("engine greedy = torch path", check_engine_greedy, (), True),
        ("speed flash B8 T1024 H12 D64", speed_flash, (8, 1024, 12, 64), False),
        ("speed flash B4 T2048 H12 D128", speed_flash, (4, 2048, 12, 128), False),
        ("speed decode B64 S2048 H12 D64", speed_decode, (64, 2048, 12, 64), False),
        ("speed decode B256 S1024 H12 D64", speed_decode, (256, 1024, 12, 64), False),
        ("speed sampler top-p", speed_sampler, (1.0, 0, 0.9), False),
        ("speed sampler plain", speed_sampler, (1.0, 0, 1.0), False),
        ("speed engine vs HF generate", speed_engine, (), False),
        ("speed train.py", speed_train, (False,), False),
        ("speed train.py --compile", speed_train, (True,), False)]


# ----------------------------------------------------------------------------- the runner, JSON and table

def run_one(name, fn, args):
    """One check -> {name, status (pass | fail | error | skip), detail, seconds, speed fields}; never raises."""
    t0 = time.perf_counter()
    try:
        res = dict(fn(*args))
        res["status"] = "pass" if res.pop("ok") else "fail"
    except Skip as e:
        res = dict(status="skip", detail=str(e))
    except Exception as e:  # noqa: BLE001 -- one failing check must not stop the others
        res = dict(status="error", detail=f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}")
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    return dict(name=name, **res, seconds=round(time.perf_counter() - t0, 1))


def line(r):
    sp = f"  {r['ours_value']:.4g} vs {r['baseline_value']:.4g} {r['unit']}: {r['ratio']:.2f}x" if "unit" in r else ""
    return f"{r['status'].upper():5s} {r['name']:32s} {r['detail']}{sp}  [{r['seconds']:.0f} s]"


def run_checks(checks, budget, jobs=1, emit=print):
    """Run [(name, fn, args, parallel)] -> results, emitting their lines in list order: parallel ones first in `jobs`
    spawned workers (if jobs > 1), then the rest here; `budget` seconds in, workers stop and no check starts."""
    end, done = time.monotonic() + budget, {}
    late = lambda name: dict(name=name, status="skip", detail=f"time budget of {budget:.0f} s used up", seconds=0)
    par = [c for c in checks if c[3]] if jobs > 1 else []
    if par:
        pool = mp.get_context("spawn").Pool(min(jobs, len(par)))
        try:
            for name, fut in [(c[0], pool.apply_async(run_one, c[:3])) for c in par]:
                try:
                    done[name] = fut.get(max(0.0, end - time.monotonic()))
                except mp.TimeoutError:
                    done[name] = late(name)
                emit(line(done[name]))
        finally:
            pool.terminate()
            pool.join()
    for name, fn, args, _ in checks:
        if name not in done:
            done[name] = run_one(name, fn, args) if time.monotonic() < end else late(name)
            emit(line(done[name]))
    return [done[c[0]] for c in checks]


def tally(results):
    n = {s: sum(r["status"] == s for r in results) for s in ("pass", "fail", "error", "skip")}
    return f"{len(results)} checks: {n['pass']} passed, {n['fail']} failed, {n['error']} errors, {n['skip']} skipped"


def render_table(res):
    """A --json file's dict -> the README's GPU table (markdown)."""
    m, fmt = res["machine"], lambda v, unit: f"{v:,.0f} {unit}" if v >= 100 else f"{v:.3g} {unit}"
    lines = [f"Measured {m['date']} on {m['gpu']} ({m['capability']}, CUDA {m['cuda']}), torch {m['torch']}, "
             f"triton {m['triton']}, by `{res['command']}`: {tally(res['checks'])}.", "",
             "| check | result | ours | baseline | ratio | detail |", "|---|---|---|---|---|---|"]
    for r in res["checks"]:
        cells = [f"{r['ours']}: {fmt(r['ours_value'], r['unit'])}", f"{r['baseline']}: "
                 f"{fmt(r['baseline_value'], r['unit'])}", f"**{r['ratio']:.2f}x**"] if "ratio" in r else ["", "", ""]
        lines.append(f"| {' | '.join([r['name'], r['status'], *cells, r['detail'].replace('|', '/')])} |")
    return "\n".join(lines) + "\n"


def gpu_error():
    """Why the GPU check cannot run here (one line), or None."""
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        return "TRITON_INTERPRET is set: the GPU check runs the compiled kernels (unset it)"
    if not torch.cuda.is_available():
        return (f"no CUDA GPU here (torch {torch.__version__}): the GPU check needs one; on CPU the kernels are "
                "tested by tests/test_attention.py and tests/test_sampling.py under TRITON_INTERPRET=1")


def build_parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=None, help="write every check's result and the machine to this JSON file")
    ap.add_argument("--only", default="", help="comma-separated substrings: run the checks whose name has one")
    ap.add_argument("--jobs", type=int, default=0, help="correctness worker processes (default: cores, GPU memory)")
    ap.add_argument("--budget", type=float, default=270.0, help="seconds after which no check starts (default 270: "
                                                                "the last, train.py --compile, needs 1-2 minutes)")
    ap.add_argument("--table", default=None, help="render a --json file as the README table and run nothing")
    ap.add_argument("--readme", default=None, help="with --table: write it between this file's gpu-table markers")
    return ap


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ap = build_parser()
    ap.error = fail = bench.fail  # one line on stderr, exit code 2
    args = ap.parse_args(argv)
    if args.table or args.readme:
        if not args.table:
            fail("--readme needs --table JSON (--readme)")
        try:
            with open(args.table) as f:
                table = render_table(json.load(f))
            bench.write_readme_table(args.readme, table, *TABLE) if args.readme else print(table, end="")
        except (OSError, ValueError, KeyError, TypeError) as e:
            fail(f"{type(e).__name__}: {e} (--table {args.table}{', --readme ' + args.readme if args.readme else ''})")
        return 0
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    checks = [c for c in all_checks() if not only or any(s in c[0] for s in only)]
    errors = [msg for bad, msg in ((not checks, f"no check name contains any of {only} (--only)"),
                                   (args.jobs < 0, f"must be >= 0, got {args.jobs} (--jobs)"),
                                   (args.json and os.path.isdir(args.json), f"{args.json} is a directory (--json)"))
              if bad] or [e for e in [gpu_error()] if e]  # flags first, then the machine
    if errors:
        fail("; ".join(errors))
    jobs = args.jobs or max(1, min(8, os.cpu_count() or 1, int(torch.cuda.mem_get_info()[0] // 3e9)))  # per core, 3 GB
    import triton
    m = dict(bench.machine(), capability="sm%d%d" % torch.cuda.get_device_capability(), cuda=torch.version.cuda,
             triton=triton.__version__)  # bench.py's record (CPU, GPU name, torch, date) + these
    t0 = time.perf_counter()
    print(f"GPU check on {m['gpu']} ({m['capability']}), torch {m['torch']}, triton {m['triton']}: {len(checks)} "
          f"checks, {jobs} worker processes for correctness, budget {args.budget:.0f} s", flush=True)
    results = run_checks(checks, args.budget, jobs, emit=lambda s: print(s, flush=True))
    print(f"{tally(results)} in {time.perf_counter() - t0:.0f} s")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"machine": m, "command": " ".join(["python bench_gpu.py", *argv]), "checks": results,
                       "tally": tally(results)}, f, indent=1)
        print(f"wrote {args.json}")
    return 1 if any(r["status"] in ("fail", "error") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
