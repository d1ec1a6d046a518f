"""Train the GPT on a chunked corpus in any BoLT layout: the M-step of em.py and a standalone trainer.

References: karpathy/nanoGPT train.py (loop, DDP skeleton, AdamW groups, warmup + cosine), nanochat (checkpoint
meta, argparse flags). Runs three ways with the same code:
  python train.py --data corpus.jsonl                                 one process
  torchrun --standalone --nproc_per_node=2 train.py --data ...        DDP (gloo on CPU, nccl on CUDA)
  from train import TrainConfig, train; train(TrainConfig(...))       em.py (process group optional, never destroyed)
Data: every document is tokenised once (data/layout.encode_doc); each epoch lays all documents out in --layout
(data/layout.sequence; the random layout's coins are keyed by (seed, epoch), so they are re-flipped every epoch),
shuffles their order with a per-epoch seed, concatenates them into one endless stream and cuts consecutive
block_size windows. A global step takes the next batch_size * world * accum windows; every rank reads the same
stream and keeps its own share, so the data order does not depend on the number of ranks, and the loss is the
token sum divided by the global target count (DDP == one process). Checkpoints: out/ckpt/ (model.GPT.save +
optim.safetensors, one atomic directory); metrics: out/metrics.jsonl.
"""
import argparse
import contextlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from data.corpus import out_dir_error, parser_error, read_docs, write_atomic
from data.layout import MODES, encode_doc, sequence
from data.tokenizer import TOKENIZERS, check_tokenizer, get_tokenizer
from model import GPT, GPTConfig, atomic_dir, load_model, resolve_checkpoint


def opt(default, help, choices=None):
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class TrainConfig:
    data: str = opt("", "training corpus, JSONL of documents ({'chunks': [{'suffix', 'latent'}]} or {'text'})")
    val: str = opt("", "held-out JSONL documents: loss on the raw layout and, for latent layouts, on --layout")
    layout: str = opt("raw", "training layout (data/layout.py)", MODES)
    out: str = opt("out/train", "output directory: ckpt/ and metrics.jsonl")
    init: str = opt("scratch", "'scratch', one of our checkpoints, or a Hugging Face GPT-2 directory")
    tokenizer: str = opt("bytes", "tokenizer", TOKENIZERS)
    bpe_dir: str = opt("", "directory with GPT-2's vocab.bpe + encoder.json (gpt2 tokenizer)")
    n_layer: int = opt(4, "layers (scratch only)")
    n_head: int = opt(4, "attention heads (scratch only)")
    n_embd: int = opt(128, "width (scratch only)")
    block_size: int = opt(0, "training window; 0 = the model's (256 from scratch); may not exceed the model's")
    max_steps: int = opt(1000, "optimizer steps (the length of the lr schedule)")
    stop_at: int = opt(0, "end this run at this step with a checkpoint (schedule unchanged); 0 = max_steps")
    batch_size: int = opt(16, "micro-batch sequences per rank")
    total_batch_tokens: int = opt(0, "tokens per optimizer step over all ranks; 0 = batch_size*block_size*world")
    lr: float = opt(1e-3, "peak learning rate")
    min_lr: float = opt(1e-4, "final learning rate of the cosine decay")
    warmup_steps: int = opt(50, "linear warmup steps")
    weight_decay: float = opt(0.1, "AdamW weight decay (matrices only)")
    grad_clip: float = opt(1.0, "gradient norm clip; 0 = off")
    dtype: str = opt("auto", "compute dtype: bf16 autocast (fp32 weights and loss) or fp32; auto = bf16 on CUDA "
                             "and on CPUs where a bf16 matmul measures faster", ("auto", "bf16", "fp32"))
    compile: bool = opt(False, "torch.compile the model (measured: no gain on this CPU at small sizes)")
    device: str = opt("auto", "auto = cuda:LOCAL_RANK if available, else cpu")
    eval_every: int = opt(200, "held-out evaluation every N steps (and at the end); 0 = only at the end")
    ckpt_every: int = opt(500, "checkpoint every N steps (and at the end); 0 = only at the end")
    log_every: int = opt(20, "progress line every N steps; 0 = silent")
    seed: int = opt(1337, "seed of the init, the data order, the layout coins and dropout")
    resume: bool = opt(False, "continue from out/ckpt exactly where it stopped (starts at step 0 if none)")


# Settings that shape the trajectory: a resumed run must use the checkpoint's (0 / 'auto' mean "as saved").
RESUME_SAME = ("data", "layout", "init", "tokenizer", "n_layer", "n_head", "n_embd", "block_size", "batch_size",
               "total_batch_tokens", "lr", "min_lr", "warmup_steps", "weight_decay", "grad_clip", "dtype", "seed")


def flag_errors(cfg):
    """Every flag checked before anything starts (files exist, values in range); -> one-line messages, each
    naming its flag. The corpus and --init are read in full before training (encode_corpus, build_model)."""
    f = lambda name: "--" + name.replace("_", "-")
    errors = [] if cfg.data else ["a training corpus is required (--data)"]
    for name in ("data", "val"):
        if getattr(cfg, name) and not os.path.isfile(getattr(cfg, name)):
            errors.append(f"{getattr(cfg, name)}: no such file ({f(name)})")
    if cfg.init != "scratch" and not os.path.isdir(cfg.init) and not os.path.isdir(cfg.init + ".old"):
        errors.append(f"{cfg.init}: neither 'scratch' nor a checkpoint directory (--init)")
    return errors + value_errors(cfg) + [e for e in (device_error(cfg.device), out_dir_error(cfg.out)) if e]


def value_errors(cfg):
    """The checks on values alone (no file is looked at): em.py runs them on every phase's config up front."""
    f = lambda name: "--" + name.replace("_", "-")
    errors = []
    for name, choices in (("layout", MODES), ("tokenizer", TOKENIZERS), ("dtype", ("auto", "bf16", "fp32"))):
        if getattr(cfg, name) not in choices:
            errors.append(f"{getattr(cfg, name)!r}: choose one of {', '.join(choices)} ({f(name)})")
    positive = ("n_layer", "n_head", "n_embd", "max_steps", "batch_size", "lr")
    non_negative = ("block_size", "stop_at", "total_batch_tokens", "min_lr", "warmup_steps", "weight_decay",
                    "grad_clip", "eval_every", "ckpt_every", "log_every")
    for name in positive + non_negative:
        v = getattr(cfg, name)
        if (v <= 0 if name in positive else v < 0) or (isinstance(v, float) and not math.isfinite(v)):
            errors.append(f"must be {'positive' if name in positive else '>= 0'}, got {v} ({f(name)})")
    if cfg.min_lr > cfg.lr:
        errors.append(f"{cfg.min_lr} exceeds --lr {cfg.lr} (--min-lr)")
    if cfg.n_head > 0 and cfg.n_embd % cfg.n_head:
        errors.append(f"{cfg.n_embd} is not divisible by --n-head {cfg.n_head} (--n-embd)")
    return errors


def device_error(name):
    if name == "auto":
        return None
    try:
        d = torch.device(name)
    except RuntimeError:
        return f"{name!r} is not a device: auto, cpu, cuda or cuda:N (--device)"
    if d.type not in ("cpu", "cuda"):
        return f"{name!r}: train.py runs on auto, cpu, cuda or cuda:N (--device)"
    if d.type == "cuda" and (not torch.cuda.is_available() or (d.index or 0) >= torch.cuda.device_count()):
        return f"{name!r}: no such CUDA device here (--device)"
    return None


def check_flags(cfg):
    """Raise ValueError with every flag problem on one line (main() prints it; em.py validates its own flags)."""
    errors = flag_errors(cfg)
    if errors:
        raise ValueError("; ".join(errors))


# ----------------------------------------------------------------------------- distributed

def setup_dist(cfg):
    """-> (rank, world, local_rank, owned). Joins a caller's process group, or starts one under torchrun."""
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), local_rank, False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        cuda = torch.cuda.is_available() and cfg.device in ("auto", "cuda")
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if cuda else "gloo")
        return dist.get_rank(), dist.get_world_size(), local_rank, True
    return 0, 1, 0, False


def pick_device(cfg, local_rank):
    if cfg.device != "auto":
        return torch.device(cfg.device)
    return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")


def bf16_faster(device, n=512):
    """Does a bf16 matmul beat fp32 here? CUDA: yes when supported. CPU: time both (a few ms)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    best = {}
    for dt in (torch.float32, torch.bfloat16):
        a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
        a @ b
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
        best[dt] = min(times)
    return best[torch.bfloat16] < 0.8 * best[torch.float32]


# ----------------------------------------------------------------------------- data

class Stream:
    """The endless training stream: epoch e = layout sequences of all documents in a permutation seeded by
    (seed, e), concatenated. The cursor (epoch, pos) is the data position stored in checkpoints."""

    def __init__(self, tok, edocs, layout, seed, epoch=0, pos=0):
        self.tok, self.edocs, self.layout, self.seed = tok, edocs, layout, seed
        self.epoch, self.pos = epoch, pos
        self.cache = {}

    def tokens(self, e):
        if e not in self.cache:
            self.cache = {k: v for k, v in self.cache.items() if k >= e - 1}  # keep the current epoch
            order = np.random.default_rng([self.seed, e]).permutation(len(self.edocs))
            seqs = [sequence(self.tok, self.edocs[i], self.layout, self.seed, e) for i in order]
            self.cache[e] = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs])
        return self.cache[e]

    def windows(self, n, T):
        """Next n windows: x, y (n, T) int64 with y = x shifted by one token; advances the cursor n*T."""
        parts, need, e, p = [], n * T + 1, self.epoch, self.pos
        while need > 0:
            part = self.tokens(e)[p:p + need]
            parts.append(part)
            need, e, p = need - len(part), e + 1, 0
        buf = torch.from_numpy(np.concatenate(parts))
        self.pos += n * T
        while self.pos >= len(self.tokens(self.epoch)):
            self.pos -= len(self.tokens(self.epoch))
            self.epoch += 1
        return buf[:-1].view(n, T), buf[1:].view(n, T)


def val_windows(tok, edocs, mode, seed, T):
    """Held-out documents in one layout (epoch 0 coins), concatenated in file order and cut into windows;
    the last window's missing targets are -1. -> x, y (n, T)."""
    ids = np.concatenate([np.asarray(sequence(tok, d, mode, seed, 0), dtype=np.int64) for d in edocs])
    n = -(-(len(ids) - 1) // T)
    x = np.zeros(n * T, dtype=np.int64)
    y = np.full(n * T, -1, dtype=np.int64)
    x[:len(ids) - 1], y[:len(ids) - 1] = ids[:-1], ids[1:]
    return torch.from_numpy(x).view(n, T), torch.from_numpy(y).view(n, T)


def encode_corpus(tok, path):
    docs = read_docs(path)  # a bad line raises ValueError naming file:line
    if not docs:
        raise ValueError(f"{path} holds no documents")
    return [encode_doc(tok, d) for d in docs]


# ----------------------------------------------------------------------------- model and optimizer

def build_model(cfg, tok):
    """Scratch (seeded), our checkpoint, or a Hugging Face GPT-2 directory, with the tokenizer's vocabulary."""
    if cfg.init == "scratch":
        torch.manual_seed(cfg.seed)
        return GPT(GPTConfig(block_size=cfg.block_size or 256, vocab_size=tok.n_vocab, n_layer=cfg.n_layer,
                             n_head=cfg.n_head, n_embd=cfg.n_embd))
    try:
        model, meta = load_model(cfg.init)
        check_tokenizer(meta, tok)  # a HF GPT-2 directory counts as tokenizer 'gpt2'
    except (ValueError, FileNotFoundError) as e:
        raise ValueError(f"{e} (--init)") from None
    if model.config.vocab_size > tok.n_vocab:
        raise ValueError(f"{cfg.init}: vocabulary {model.config.vocab_size} is larger than tokenizer {tok.name}'s "
                         "(--init)")
    if model.config.vocab_size < tok.n_vocab:  # GPT-2's 50257 + the 4 latent tokens
        model.resize_vocab(tok.n_vocab, seed=cfg.seed)
    return model


def resume_state(cfg, ckpt):
    """Our checkpoint in out/ckpt -> (model, meta), config merged into cfg; None when there is none yet."""
    try:
        path = resolve_checkpoint(ckpt)
    except FileNotFoundError:
        return None
    try:
        model, meta = GPT.load(path)
        saved = meta["train_config"]
    except (ValueError, KeyError) as e:
        raise ValueError(f"{path} is not a train.py checkpoint ({e}) (--resume)") from None
    for k in RESUME_SAME:
        mine = getattr(cfg, k)
        unset = (k in ("block_size", "total_batch_tokens") and mine == 0) or (k == "dtype" and mine == "auto")
        if not unset and mine != saved[k]:
            raise ValueError(f"{mine!r} differs from the checkpoint's {saved[k]!r} (--{k.replace('_', '-')}, "
                             "--resume)")
        setattr(cfg, k, saved[k])
    return model, meta, path


def make_optimizer(model, cfg, device):
    """AdamW(0.9, 0.95), weight decay on matrices (ndim >= 2: linear weights and embeddings) only."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]  # tied lm_head listed once
    groups = [{"params": [p for _, p in named if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for _, p in named if p.dim() < 2], "weight_decay": 0.0}]
    # fused: one kernel for all parameters; on this CPU it was >2x faster than foreach for a 4x128 model
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), fused=device.type in ("cpu", "cuda"))
    order = [p for g in opt.param_groups for p in g["params"]]
    names = {id(p): n for n, p in named}
    return opt, [names[id(p)] for p in order]


def optim_tensors(opt, names):
    """AdamW state as a flat {name.key: tensor} dict for safetensors."""
    out = {}
    for name, p in zip(names, (p for g in opt.param_groups for p in g["params"])):
        for k, v in opt.state.get(p, {}).items():
            out[f"{name}.{k}"] = v.detach().reshape(-1 if k == "step" else v.shape).contiguous().cpu()
    return out


def load_optim(opt, names, path):
    sd, flat = opt.state_dict(), load_file(os.path.join(path, "optim.safetensors"))
    state = {}
    for i, name in enumerate(names):
        if f"{name}.step" in flat:
            state[i] = {k: flat[f"{name}.{k}"] for k in ("exp_avg", "exp_avg_sq")}
            state[i]["step"] = flat[f"{name}.step"].reshape(())
    opt.load_state_dict({"state": state, "param_groups": sd["param_groups"]})


def save_checkpoint(path, model, opt, names, meta):
    """model.GPT.save's files plus optim.safetensors, all in one atomic directory (old or new, never half)."""
    with atomic_dir(path) as tmp:
        model.save(tmp, meta)
        save_file(optim_tensors(opt, names), os.path.join(tmp, "optim.safetensors"))


def lr_at(step, cfg):
    """Linear warmup to lr, then cosine to min_lr at max_steps (nanoGPT)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0))) * (cfg.lr - cfg.min_lr)


@torch.no_grad()
def evaluate(model, windows, batch_size, rank, world, ctx, device):
    """Mean loss per target token over all held-out windows (window j on rank j % world)."""
    x, y = windows
    tot = torch.zeros(2, dtype=torch.float64, device=device)  # (loss sum, target count)
    model.eval()
    for i in range(rank * batch_size, len(x), world * batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        with ctx():
            _, loss = model(xb, yb, loss_reduction="sum")
        tot += torch.stack([loss.double(), (yb != -1).sum().double()])
    model.train()
    if world > 1:
        dist.all_reduce(tot)
    return (tot[0] / tot[1].clamp(min=1)).item()


def keep_metrics(path, step, stop):
    """Before a resumed run appends to metrics.jsonl: keep the rows its checkpoint (at `step`) had seen. The rows
    a killed run wrote after it are logged again, as is the closing held-out evaluation when the checkpoint is
    already at `stop`; a half-written last line goes too."""
    if not os.path.exists(path):
        return
    kept = []
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                continue
            if row["step"] < step or (row["step"] == step and ("loss" in row or step < stop)):
                kept.append(line if line.endswith("\n") else line + "\n")
    write_atomic(path, "".join(kept))


# ----------------------------------------------------------------------------- the loop

def train(cfg):
    """Train as configured; returns {'ckpt', 'steps', 'tokens', 'train_loss', 'val_loss', 'val_loss_latent',
    'tok_per_s', 'config'}. Initialises (and later destroys) a process group only if it started one."""
    cfg = replace(cfg)  # the caller's config stays as given
    check_flags(cfg)
    rank, world, local_rank, owned = setup_dist(cfg)
    try:
        return _train(cfg, rank, world, local_rank)
    finally:
        if owned:
            dist.destroy_process_group()


def _train(cfg, rank, world, local_rank):
    device = pick_device(cfg, local_rank)
    log = print if rank == 0 else (lambda *a, **k: None)
    try:
        tok = get_tokenizer(cfg.tokenizer, cfg.bpe_dir or None)
    except (ValueError, FileNotFoundError) as e:
        raise ValueError(f"{e} (--tokenizer)") from None
    ckpt = os.path.join(cfg.out, "ckpt")
    state = resume_state(cfg, ckpt) if cfg.resume else None
    if state is None:
        model, meta = build_model(cfg, tok), {"step": 0, "data": {"epoch": 0, "pos": 0}}
        if cfg.resume:
            log(f"resume: no checkpoint in {ckpt} yet, starting at step 0")
    else:
        model, meta, path = state
    cfg.n_layer, cfg.n_head, cfg.n_embd = model.config.n_layer, model.config.n_head, model.config.n_embd
    T = cfg.block_size = cfg.block_size or model.config.block_size
    if T > model.config.block_size:
        raise ValueError(f"{T} exceeds the model's block_size {model.config.block_size} (--block-size)")
    micro = cfg.batch_size * T * world
    cfg.total_batch_tokens = cfg.total_batch_tokens or micro
    if cfg.total_batch_tokens % micro:
        raise ValueError(f"{cfg.total_batch_tokens} is not a multiple of batch_size*block_size*world = "
                         f"{cfg.batch_size}*{T}*{world} = {micro} (--total-batch-tokens)")
    accum = cfg.total_batch_tokens // micro
    if cfg.dtype == "auto":
        choice = ["bf16" if bf16_faster(device) else "fp32"]
        if world > 1:  # rank 0's measurement for all: ranks timing a busy CPU could disagree
            dist.broadcast_object_list(choice, src=0)
        cfg.dtype = choice[0]
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    ctx = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if cfg.dtype == "bf16" else contextlib.nullcontext

    edocs = encode_corpus(tok, cfg.data)
    stream = Stream(tok, edocs, cfg.layout, cfg.seed, **meta["data"])
    vals = {}
    if cfg.val:
        vdocs = encode_corpus(tok, cfg.val)
        vals = {"val_loss": val_windows(tok, vdocs, "raw", cfg.seed, T)}
        if cfg.layout != "raw":
            vals["val_loss_latent"] = val_windows(tok, vdocs, cfg.layout, cfg.seed, T)

    model.to(device)
    opt, names = make_optimizer(model, cfg, device)
    if state is not None:
        load_optim(opt, names, path)
    fwd = torch.compile(model) if cfg.compile else model
    if world > 1:
        fwd = torch.nn.parallel.DistributedDataParallel(fwd, device_ids=[local_rank] if device.type == "cuda" else None)
    log(f"config: {json.dumps(asdict(cfg))}")
    log(f"model: {model.num_params() / 1e6:.2f}M params | {len(edocs)} docs | world {world} | accum {accum} | "
        f"{cfg.total_batch_tokens} tokens/step")
    if rank == 0:
        os.makedirs(cfg.out, exist_ok=True)
    step = start = meta["step"]
    stop = min(cfg.max_steps, cfg.stop_at or cfg.max_steps)
    mpath = os.path.join(cfg.out, "metrics.jsonl")
    if rank == 0 and cfg.resume:
        keep_metrics(mpath, start, stop)
    metrics = open(mpath, "a" if cfg.resume else "w") if rank == 0 else None

    def write(rec):
        if metrics:
            metrics.write(json.dumps(rec) + "\n")
            metrics.flush()

    def run_eval(step):
        res = {k: evaluate(model, w, cfg.batch_size, rank, world, ctx, device) for k, w in vals.items()}
        if res:
            log(f"step {step} | " + " | ".join(f"{k} {v:.4f}" for k, v in res.items()))
            write({"step": step, **res})
        return res

    def checkpoint(step, train_loss):
        if rank == 0:
            save_checkpoint(ckpt, model, opt, names, {
                "tokenizer": tok.name, "train_config": asdict(cfg), "step": step, "train_loss": train_loss,
                "data": {"epoch": stream.epoch, "pos": stream.pos}})
        if world > 1:
            dist.barrier()  # nobody returns (or reads the checkpoint) before it exists

    train_loss, res = meta.get("train_loss"), {}
    busy, n_busy, win, n_win = 0.0, 0, 0.0, 0  # step times (no eval/checkpoint): whole run, log window
    while step < stop:
        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed + 1_000_003 * rank + step)  # dropout: a function of (seed, rank, step)
        lr = lr_at(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = stream.windows(cfg.batch_size * world * accum, T)  # the whole global batch, (n, T)
        count = int((y != -1).sum())  # global target count: every rank holds the whole global batch
        x, y = x.view(accum, world, cfg.batch_size, T)[:, rank], y.view(accum, world, cfg.batch_size, T)[:, rank]
        loss_sum = torch.zeros((), device=device)
        for i in range(accum):
            xb, yb = x[i].to(device, non_blocking=True), y[i].to(device, non_blocking=True)
            sync = fwd.no_sync() if world > 1 and i < accum - 1 else contextlib.nullcontext()
            with sync:
                with ctx():
                    _, loss = fwd(xb, yb, loss_reduction="sum")
                (loss * (world / count)).backward()  # DDP averages over ranks; the world factor undoes it
            loss_sum += loss.detach()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        dt = time.perf_counter() - t0
        win, n_win = win + dt, n_win + 1
        if step > start + 1:  # the run's throughput leaves out the first step (allocations, compilation)
            busy, n_busy = busy + dt, n_busy + 1
        last = step == stop
        if (cfg.log_every and step % cfg.log_every == 0) or last:
            if world > 1:
                dist.all_reduce(loss_sum)
            train_loss = loss_sum.item() / count
            tok_s = cfg.total_batch_tokens * n_win / win
            if cfg.log_every:
                log(f"step {step}/{cfg.max_steps} | loss {train_loss:.4f} | lr {lr:.2e} | {tok_s:,.0f} tok/s | "
                    f"eta {(stop - step) * win / n_win:.0f}s")
            write({"step": step, "loss": train_loss, "lr": lr, "tok_per_s": tok_s, "time": time.time()})
            win, n_win = 0.0, 0
        if vals and cfg.eval_every and step % cfg.eval_every == 0 and not last:
            run_eval(step)
        if (cfg.ckpt_every and step % cfg.ckpt_every == 0) or last:
            checkpoint(step, train_loss)
    if vals:
        res = run_eval(step)
    if metrics:
        metrics.close()
    tok_per_s = n_busy * cfg.total_batch_tokens / busy if n_busy else None
    return {"ckpt": ckpt, "steps": step, "tokens": step * cfg.total_batch_tokens, "train_loss": train_loss,
            "val_loss": res.get("val_loss"), "val_loss_latent": res.get("val_loss_latent"),
            "tok_per_s": tok_per_s, "config": asdict(cfg)}


# ----------------------------------------------------------------------------- CLI

def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in fields(TrainConfig):
        flag, h = "--" + f.name.replace("_", "-"), f.metadata["help"]
        if f.type is bool:
            p.add_argument(flag, action="store_true", help=h)
        else:
            p.add_argument(flag, type=f.type, default=f.default, choices=f.metadata["choices"],
                           help=h + " (default: %(default)s)")
    return p


def main(argv=None):
    p = build_parser()
    p.error = parser_error  # one line, exit code 2 (below), not argparse's usage block
    try:
        res = train(TrainConfig(**vars(p.parse_args(argv))))
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps({k: v for k, v in res.items() if k != "config"}))


if __name__ == "__main__":
    main()
