"""Benchmarks, one section per component; each prints a ratio against a baseline measured in the same run.

  python bench.py attention   Triton flash attention / decode vs torch SDPA (needs CUDA; says so without it)
  python bench.py sampling    Triton sampler vs a torch sampler (needs CUDA; says so without it)
  python bench.py engine      sample.py E-step-shaped generate+score vs a naive no-cache loop and HF generate
  python bench.py train       train.py tokens/s vs a minimal plain fp32 PyTorch loop, and MFU vs measured peak
  python bench.py memory      train.py peak RSS and start-up on JSONL vs token shards, 20k docs to 100M tokens;
                              an E-step unit's peak RSS on token shards of 1M vs 100M tokens; em.py's input
                              check + data preparation's peak RSS on a {"text"} --corpus of 1M vs 100M tokens

  python bench.py gpu --json out/gpu.json   every kernel compiled, the engine and train.py on one CUDA GPU:
                                            correctness and speed ratios in one run (bench_gpu.py, its flags)

  python bench.py engine train --json out/bench.json        # also write every comparison as JSON
  python bench.py --table out/bench.json --readme README.md  # that JSON -> the README's Performance table
"""
import argparse
import sys

from bench_memory import bench_memory
from data.cli import fail

# ----------------------------------------------------------------------------- attention
# (section: attention)

def bench_attention():
    """Triton flash attention (fwd, fwd+bwd) and split-KV decode vs torch SDPA in the same run (bf16, or fp16
    before sm80). Reports ms, TFLOPS / GB/s and the speedup over SDPA."""
    import torch
    if not torch.cuda.is_available():
        print("attention: needs a CUDA GPU (none found here); nothing measured. The kernels' correctness is "
              "covered by tests/test_attention.py under TRITON_INTERPRET=1.")
        return []
    from triton.testing import do_bench
    from kernels.attention import decode_attn_ref, flash_attn_ref
    from kernels.attention_triton import decode_attn_triton, flash_attn_triton
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    print(f"attention on {torch.cuda.get_device_name()}, {dtype}")
    rows = []
    for B, T, H, D, causal in [(8, 1024, 12, 64, True), (8, 1024, 12, 64, False), (4, 2048, 16, 128, True)]:
        qkv = torch.randn(B, T, 3, H, D, device="cuda", dtype=dtype, requires_grad=True)
        do = torch.randn(B, T, H, D, device="cuda", dtype=dtype)
        flops = 4 * B * H * T * T * D * (0.5 if causal else 1.0)  # two matmuls, half of them skipped if causal
        for mode, mult in (("fwd", 1.0), ("fwd+bwd", 3.5)):  # backward = 5 matmuls ~ 2.5x the forward
            ms = {}
            for name, f in (("triton", flash_attn_triton), ("sdpa", flash_attn_ref)):
                if mode == "fwd":
                    run = lambda f=f: f(*qkv.unbind(2), causal)
                else:
                    run = lambda f=f: f(*qkv.unbind(2), causal).backward(do)
                ms[name] = do_bench(run, warmup=25, rep=100)
            print(f"  flash {mode:8s} B{B} T{T} H{H} D{D} causal={causal!s:5s}  triton {ms['triton']:.3f} ms "
                  f"({mult * flops / ms['triton'] * 1e-9:.1f} TFLOPS)  sdpa {ms['sdpa']:.3f} ms  "
                  f"speedup {ms['sdpa'] / ms['triton']:.2f}x")
            rows.append(_row("attention", f"flash {mode} B{B} T{T} H{H} D{D} causal={causal}", "Triton flash attention",
                             ms["triton"], "torch SDPA", ms["sdpa"], "ms"))
    for B, S, H, D in [(64, 2048, 12, 64), (256, 1024, 12, 64)]:
        q = torch.randn(B, 1, H, D, device="cuda", dtype=dtype)
        kc, vc = (torch.randn(B, S, H, D, device="cuda", dtype=dtype) for _ in range(2))
        seqlens = torch.randint(1, S + 1, (B,), device="cuda", dtype=torch.int32)  # ragged, as in the E-step
        ms = {name: do_bench(lambda f=f: f(q, kc, vc, seqlens), warmup=25, rep=100)
              for name, f in (("triton", decode_attn_triton), ("sdpa", decode_attn_ref))}
        gbytes = 2 * seqlens.sum().item() * H * D * kc.element_size() * 1e-9  # K and V actually needed
        print(f"  decode B{B} S{S} H{H} D{D} ragged  triton {ms['triton']:.3f} ms ({gbytes / ms['triton'] * 1e3:.0f}"
              f" GB/s useful)  sdpa+mask {ms['sdpa']:.3f} ms  speedup {ms['sdpa'] / ms['triton']:.2f}x")
        rows.append(_row("attention", f"decode B{B} S{S} H{H} D{D} ragged", "Triton split-KV decode", ms["triton"],
                         "torch SDPA + mask", ms["sdpa"], "ms"))
    return rows


# ----------------------------------------------------------------------------- sampling
# (section: sampling)

def _naive_sampler(logits, temperature, top_k, top_p):
    """vLLM-style torch sampler, the baseline: sort + cumsum for top-k/top-p, exponential race on torch RNG,
    log_softmax for both log-probabilities. Scalar parameters."""
    import torch
    s = logits.float() / temperature
    if top_k or top_p < 1.0:
        sv, si = s.sort(dim=-1, descending=True)
        pos = torch.arange(s.size(1), device=s.device)
        if top_k:
            sv = sv.masked_fill(pos >= top_k, float("-inf"))
        probs = sv.softmax(-1)
        sv = sv.masked_fill(probs.cumsum(-1) - probs >= top_p, float("-inf"))
    else:
        sv, si = s, None
    lq = sv.log_softmax(-1)
    choice = (lq.exp() / torch.empty_like(lq).exponential_()).argmax(-1, keepdim=True)
    tok = choice if si is None else si.gather(1, choice)
    return tok[:, 0], lq.gather(1, choice)[:, 0], logits.float().log_softmax(-1).gather(1, tok)[:, 0]


def bench_sampling():
    """Fused Triton sampler vs the vLLM-style torch sampler (and our torch path) on CUDA; without CUDA, our torch
    path (what runs the E-step on CPU) vs the same baseline on CPU. E-step shapes: B up to 256, byte / GPT-2 /
    Llama-3 vocabularies, plain sampling and top-k + top-p."""
    import time
    import torch
    from kernels.sampling import sample_ref
    cuda = torch.cuda.is_available()
    if not cuda:
        print("sampling: no CUDA GPU here, so the Triton kernel is not timed (its correctness is covered by "
              "tests/test_sampling.py under TRITON_INTERPRET=1). Timing the CPU torch path instead.")
    dev = "cuda" if cuda else "cpu"
    if cuda:
        from triton.testing import do_bench
        from kernels.sampling_triton import sample_triton
        timer = lambda f: do_bench(f, warmup=10, rep=50)
    else:
        def timer(f, reps=3):
            f()
            t0 = time.perf_counter()
            for _ in range(reps):
                f()
            return (time.perf_counter() - t0) / reps * 1e3
    rows = []
    shapes = [(256, 261), (256, 50261)] + ([(1, 50261), (256, 128256)] if cuda else [])
    for B, V in shapes:
        logits = torch.randn(B, V, device=dev) * 3
        ids = torch.arange(B, device=dev)
        for params in [(1.0, 0, 1.0), (0.8, 50, 0.9)]:
            ms = {"naive torch": timer(lambda: _naive_sampler(logits, *params)),
                  "ours torch": timer(lambda: sample_ref(logits, *params, 0, ids, ids))}
            if cuda:
                ms["triton"] = timer(lambda: sample_triton(logits, *params, 0, ids, ids))
            ours = ms.get("triton", ms["ours torch"])
            line = "  ".join(f"{k} {v:.3f} ms" for k, v in ms.items())
            print(f"  B{B} V{V} T,k,p={params}  {line}  speedup over naive {ms['naive torch'] / ours:.2f}x")
            name = "Triton sampler" if cuda else "kernels.sampling torch path"
            rows.append(_row("sampling", f"B{B} V{V} T,k,p={params}", name, ours, "vLLM-style torch sampler",
                             ms["naive torch"], "ms"))
    return rows


# ----------------------------------------------------------------------------- engine
# (section: engine)

def _engine_naive(model, prompts, steps):
    """nanoGPT's generate over one right-padded batch: re-run the whole context every token (no cache), head on
    each row's last position only, argmax. Causal attention keeps the right padding out of valid positions."""
    import torch
    n = len(prompts)
    lens = torch.tensor([len(p) for p in prompts])
    buf = torch.zeros(n, int(lens.max()) + steps, dtype=torch.long)  # (N, Lmax + steps)
    for i, p in enumerate(prompts):
        buf[i, :len(p)] = torch.tensor(p)
    ar = torch.arange(n)
    with torch.inference_mode():
        for _ in range(steps):
            h = model.trunk(buf[:, :int(lens.max())])[ar, lens - 1]  # (N, C)
            buf[ar, lens] = model.lm_head(h).float()[:, :model.config.vocab_size].argmax(-1)
            lens += 1
    return [buf[i, len(p):len(p) + steps].tolist() for i, p in enumerate(prompts)]


def bench_engine():
    """sample.py on E-step-shaped work on a 4-layer 256-wide GPT-2 with random weights, for the byte vocabulary
    (261, the CPU world) and GPT-2's (50261): 64 ragged prompts (32-256 tokens), 48 new tokens.
      greedy:  (a) generate vs (b) a nanoGPT no-cache loop over the same padded batch (timed over its first
               NAIVE steps; its context only grows, so this flatters it) vs (c) transformers' generate (left-padded,
               its KV cache) on the same weights. Greedy tokens are compared across all three.
      E-step:  16 prompts x K=4 samples at temperature 1, then score() of every (prompt, sample) pair, vs
               transformers' generate(do_sample, num_return_sequences=4) (generation only)."""
    import tempfile
    import time

    import torch

    from checkpoint import from_pretrained
    from model import GPT, GPTConfig
    from sample import generate, score
    try:
        import transformers
    except ImportError:
        transformers = None
        print("transformers is not installed: (c) is skipped")
    N, K, M, NAIVE = 64, 4, 48, 4
    rows = []
    print(f"torch threads {torch.get_num_threads()}; {N} prompts of 32-256 tokens, {M} new tokens")
    for V in (261, 50261):
        torch.manual_seed(0)
        hf = None
        if transformers is not None:
            hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
                vocab_size=V, n_positions=512, n_embd=256, n_layer=4, n_head=4)).eval()
            with tempfile.TemporaryDirectory() as d:
                hf.save_pretrained(d, safe_serialization=True)
                model = from_pretrained(d).eval()
        else:
            model = GPT(GPTConfig(block_size=512, vocab_size=V, n_layer=4, n_head=4, n_embd=256)).eval()
        g = torch.Generator().manual_seed(0)
        prompts = [torch.randint(0, V, (int(torch.randint(32, 257, (1,), generator=g)),), generator=g).tolist()
                   for _ in range(N)]
        print(f"-- vocab {V}")

        t = time.perf_counter()
        out = [o["tokens"] for o in generate(model, prompts, M, temperature=0)]
        a = N * M / (time.perf_counter() - t)
        t = time.perf_counter()
        naive = _engine_naive(model, prompts, NAIVE)
        b = N * NAIVE / (time.perf_counter() - t)
        same_b = sum(x[:NAIVE] == y for x, y in zip(out, naive))
        print(f"greedy  (a) engine {a:8.1f} tok/s   (b) naive loop {b:7.1f} tok/s   a/b = {a / b:6.2f}x"
              f"   (same first {NAIVE} tokens: {same_b}/{N} rows)")
        case = f"generate, vocab {V}, greedy, {N} prompts x {M} tokens"
        rows.append(_row("engine", case, "sample.generate", a, f"nanoGPT no-cache loop (first {NAIVE} steps)", b,
                         "tok/s", f"same first {NAIVE} tokens: {same_b}/{N} rows"))
        if hf is not None:
            T = max(map(len, prompts))
            idx, mask = torch.zeros(N, T, dtype=torch.long), torch.zeros(N, T, dtype=torch.long)
            for i, p in enumerate(prompts):  # left padding, as transformers expects for generation
                idx[i, T - len(p):], mask[i, T - len(p):] = torch.tensor(p), 1
            with torch.inference_mode():
                t = time.perf_counter()
                r = hf.generate(input_ids=idx, attention_mask=mask, max_new_tokens=M, min_new_tokens=M,
                                do_sample=False, pad_token_id=0, eos_token_id=None)
                c = N * M / (time.perf_counter() - t)
            same_c = sum(x == y for x, y in zip(out, r[:, T:].tolist()))
            print(f"greedy  (c) HF generate {c:7.1f} tok/s   a/c = {a / c:6.2f}x   (same tokens: {same_c}/{N} rows)")
            rows.append(_row("engine", case, "sample.generate", a, "HF generate (KV cache)", c, "tok/s",
                             f"same tokens: {same_c}/{N} rows"))

        es = [p for p in prompts[:N // K] for _ in range(K)]  # K samples of each prompt, distinct request ids
        t = time.perf_counter()
        samples = [o["tokens"] for o in generate(model, es, M, temperature=1.0, ids=range(N), seed=1)]
        tg = time.perf_counter() - t
        t = time.perf_counter()
        score(model, es, samples)
        ts = time.perf_counter() - t
        print(f"E-step  (a) generate {N * M / tg:8.1f} tok/s ({tg:.2f} s), score {N * M / ts:8.1f} tok/s ({ts:.2f} s)")
        if hf is not None:
            T = max(map(len, prompts[:N // K]))
            idx, mask = torch.zeros(N // K, T, dtype=torch.long), torch.zeros(N // K, T, dtype=torch.long)
            for i, p in enumerate(prompts[:N // K]):
                idx[i, T - len(p):], mask[i, T - len(p):] = torch.tensor(p), 1
            with torch.inference_mode():
                t = time.perf_counter()
                hf.generate(input_ids=idx, attention_mask=mask, max_new_tokens=M, min_new_tokens=M, do_sample=True,
                            num_return_sequences=K, top_k=0, top_p=1.0, temperature=1.0, pad_token_id=0,
                            eos_token_id=None)
                c = N * M / (time.perf_counter() - t)
            print(f"E-step  (c) HF generate {c:7.1f} tok/s   a/c = {N * M / tg / c:6.2f}x (generation only)")
            rows.append(_row("engine", f"E-step sampling, vocab {V}, {N // K} prompts x K={K}, T=1, {M} tokens",
                             "sample.generate", N * M / tg, "HF generate (do_sample, num_return_sequences)", c,
                             "tok/s", f"score() of the same pairs: {N * M / ts:.0f} tok/s"))
    return rows


# ----------------------------------------------------------------------------- train
# (section: train)

def bench_train():
    """train.py's step vs a minimal nanoGPT-style loop (model.GPT, fp32, foreach AdamW) on the same config, init,
    batches and lr schedule, 4 layers x {128, 256} wide, T=256, 8 sequences per step. MFU = tok/s * FLOPs per
    token (6N + 12*L*C*T, nanoGPT's estimate) / the matmul peak of the compute dtype, measured in this run."""
    import contextlib
    import io
    import json
    import os
    import random
    import tempfile
    import time

    import torch

    import train as tr
    from data.layout import encode_doc
    from data.loader import Rows
    from data.shards import from_docs
    from data.tokenizer import get_tokenizer
    from model import GPT, GPTConfig

    def peak(dtype, n=1024):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
        return 2 * n ** 3 / best

    def plain(cfg, tok, edocs):
        torch.manual_seed(cfg.seed)
        model = GPT(GPTConfig(block_size=cfg.block_size, vocab_size=tok.n_vocab, n_layer=cfg.n_layer,
                              n_head=cfg.n_head, n_embd=cfg.n_embd))
        params = list(model.parameters())
        opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
                                 {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                                lr=cfg.lr, betas=(0.9, 0.95))
        rows, busy = Rows(tok, edocs, cfg.layout, cfg.seed, cfg.block_size), 0.0
        for step in range(cfg.max_steps):
            t0 = time.perf_counter()
            for g in opt.param_groups:
                g["lr"] = tr.lr_at(step, cfg)
            x, y = map(torch.from_numpy, rows.next_rows(cfg.batch_size))
            _, loss = model(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            busy += (time.perf_counter() - t0) if step else 0.0  # leave out the first step, as train.py does
        return (cfg.max_steps - 1) * cfg.batch_size * cfg.block_size / busy, loss.item()

    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 8))) for _ in range(500)]
    tok = get_tokenizer("bytes")
    peaks = {"fp32": peak(torch.float32), "bf16": peak(torch.bfloat16)}
    rows = []
    print(f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}; matmul peak (1024^3): "
          f"fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "docs.jsonl")
        with open(data, "w") as f:
            for i in range(300):
                f.write(json.dumps({"id": i, "chunks": [{"suffix": " ".join(rng.choices(words, k=80)) + ".",
                                                         "latent": None}]}) + "\n")
        edocs = from_docs([encode_doc(tok, json.loads(line)) for line in open(data)], tok)
        for n_embd in (128, 256):
            cfg = tr.TrainConfig(data=data, out=os.path.join(tmp, "out"), n_layer=4, n_head=4, n_embd=n_embd,
                                 block_size=256, batch_size=8, max_steps=12, warmup_steps=5, log_every=0,
                                 eval_every=0, ckpt_every=0)
            L, C, T = cfg.n_layer, cfg.n_embd, cfg.block_size
            n_params = GPT(GPTConfig(block_size=T, vocab_size=tok.n_vocab, n_layer=L, n_embd=C)).num_params()
            flops = 6 * n_params + 12 * L * C * T  # per token, forward + backward
            print(f"4x{C}, T={T}, {n_params / 1e6:.2f}M params, {cfg.batch_size * T} tokens/step, {cfg.max_steps} "
                  f"steps; best of 2 interleaved rounds (the CPU is shared)")
            variants = {"train.py --dtype fp32": dict(dtype="fp32"), "train.py (auto dtype)": {},
                        "train.py (auto) --compile": dict(compile=True)}
            best = {}  # name -> (tok/s, dtype, final loss, wall seconds)
            for rnd in range(2):
                tps, loss = plain(cfg, tok, edocs)
                best["plain"] = max(best.get("plain", (0,)), (tps, "fp32", loss, 0.0))
                for name, over in variants.items():
                    if rnd and over.get("compile"):
                        continue  # one compiled run: its warm-up alone takes tens of seconds
                    t0 = time.perf_counter()
                    with contextlib.redirect_stdout(io.StringIO()):  # train()'s config and model lines
                        res = tr.train(tr.TrainConfig(**{**cfg.__dict__, **over}))
                    run = (res["tok_per_s"], res["config"]["dtype"], res["train_loss"], time.perf_counter() - t0)
                    best[name] = max(best.get(name, (0,)), run)
            base = best["plain"][0]
            for name, (tps, dt, loss, wall) in best.items():
                label = "plain fp32 loop (baseline)" if name == "plain" else name
                print(f"  {label:28s} {tps:9,.0f} tok/s  {tps / base:5.2f}x  MFU {tps * flops / peaks[dt]:5.1%} of {dt}"
                      f"  final loss {loss:.4f}" + (f"  (wall {wall:.0f}s)" if wall else ""))
                if name != "plain":
                    rows.append(_row("train", f"M-step, 4x{C}, T={T}, {cfg.batch_size * T} tokens/step", name, tps,
                                     "plain fp32 PyTorch loop", base, "tok/s",
                                     f"{dt}, MFU {tps * flops / peaks[dt]:.1%}; final loss {loss:.4f} vs "
                                     f"{best['plain'][2]:.4f}"))
    return rows


# ----------------------------------------------------------------------------- JSON results and the README table

def _row(section, case, ours, ours_value, baseline, baseline_value, unit, note=""):
    """One comparison measured in this run. speedup > 1 means ours is faster, whatever the unit (tok/s or ms)."""
    speedup = ours_value / baseline_value if unit == "tok/s" else baseline_value / ours_value
    return dict(section=section, case=case, ours=ours, ours_value=ours_value, baseline=baseline,
                baseline_value=baseline_value, unit=unit, speedup=speedup, note=note)


def machine():
    """What the numbers were measured on: CPU model from /proc/cpuinfo, cores, torch threads, load, GPU."""
    import os
    import platform
    import time
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return dict(cpu=cpu, cores=os.cpu_count(), torch_threads=torch.get_num_threads(), torch=torch.__version__,
                gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                load_average=round(os.getloadavg()[0], 1), date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))


def render_table(res):
    """bench JSON ({'machine', 'command', 'rows'}) -> the README's Performance table (markdown)."""
    m = res["machine"]
    if not res["rows"]:
        raise ValueError("the bench JSON holds no measurements (run the engine / train sections)")
    on = m["gpu"] or f"{m['cpu']} ({m['cores']} cores, {m['torch_threads']} torch threads, load average " \
                      f"{m['load_average']} at the start)"
    lines = [f"Measured {m['date']} on {on}, torch {m['torch']}, by `{res['command']}`.", "",
             "| benchmark | case | ours | baseline | speedup | notes |", "|---|---|---|---|---|---|"]
    fmt = lambda v, unit: f"{v:,.0f} tok/s" if unit == "tok/s" else f"{v:.3f} ms"
    for r in res["rows"]:
        lines.append(f"| {r['section']} | {r['case']} | {r['ours']}: {fmt(r['ours_value'], r['unit'])} | "
                     f"{r['baseline']}: {fmt(r['baseline_value'], r['unit'])} | **{r['speedup']:.2f}x** | "
                     f"{r['note']} |")
    return "\n".join(lines) + "\n"


TABLE_START, TABLE_END = "<!-- bench table: start -->", "<!-- bench table: end -->"


def write_readme_table(readme, table, start=TABLE_START, end=TABLE_END):
    """Replace the text between the two markers (the bench table's by default) in `readme` with `table`."""
    text = open(readme).read()
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"{readme} needs exactly one {start} line followed by one {end} line")
    head, rest = text.split(start)
    tail = rest.split(end)[1]
    with open(readme + ".tmp", "w") as f:
        f.write(head + start + "\n" + table + end + tail)
    import os
    os.replace(readme + ".tmp", readme)


def read_results(path):
    """A bench JSON file -> dict, checked enough that a wrong file gives one clear error."""
    import json
    try:
        with open(path) as f:
            res = json.load(f)
        for key in ("machine", "command", "rows"):
            res[key]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a bench.py --json file ({type(e).__name__}: {e})") from None
    return res


SECTIONS = {"attention": bench_attention, "sampling": bench_sampling, "engine": bench_engine, "train": bench_train,
            "memory": bench_memory}


def build_parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sections", nargs="*", help=f"which benchmarks to run: {', '.join(SECTIONS)} (default: all)")
    ap.add_argument("--json", default=None, help="also write every comparison to this JSON file")
    ap.add_argument("--table", default=None, help="render a --json file as the README Performance table (markdown) "
                                                  "and run nothing")
    ap.add_argument("--readme", default=None, help="with --table: write the table between the bench-table markers "
                                                   "of this file instead of printing it")
    return ap


def main(argv=None):
    import json
    import os
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["gpu"]:  # the GPU check lives in bench_gpu.py (its own flags)
        import bench_gpu
        sys.exit(bench_gpu.main(argv[1:]))
    ap = build_parser()
    ap.error = fail
    args = ap.parse_args(argv)
    bad = [s for s in args.sections if s not in SECTIONS]
    errors = [msg for cond, msg in (
        (bad, f"unknown section {', '.join(bad)}; choose from {', '.join(SECTIONS)} (sections)"),
        (args.table and (args.sections or args.json), "--table renders a file and runs nothing (--table)"),
        (args.readme and not args.table, "--readme needs --table JSON (--readme)"),
        (args.table and not os.path.isfile(args.table or ""), f"no such file {args.table} (--table)"),
        (args.readme and not os.path.isfile(args.readme or ""), f"no such file {args.readme} (--readme)"),
        (args.json and os.path.isdir(args.json or ""), f"{args.json} is a directory, not a file (--json)"),
    ) if cond]
    if errors:
        ap.error("; ".join(errors))
    try:
        if args.table:
            table = render_table(read_results(args.table))
            write_readme_table(args.readme, table) if args.readme else print(table, end="")
            return
    except (OSError, ValueError) as e:
        ap.error(str(e))
    rows, where = [], machine()  # the load average before this run's own work
    for name in args.sections or list(SECTIONS):
        print(f"== {name}")
        rows += SECTIONS[name]() or []
    if args.json:
        cmd = "python bench.py " + " ".join(args.sections or []) + f" --json {args.json}"
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)  # out/ may not exist yet
        with open(args.json, "w") as f:
            json.dump({"machine": where, "command": " ".join(cmd.split()), "rows": rows}, f, indent=1)
        print(f"wrote {len(rows)} comparisons to {args.json}")


if __name__ == "__main__":
    main()
