"""Train the GPT on a chunked corpus in any BoLT layout: the M-step of em.py and a standalone trainer.

References: karpathy/nanoGPT train.py (loop, DDP skeleton, AdamW groups, warmup + cosine), nanochat (checkpoint
meta, argparse flags). Runs three ways with the same code:
  python train.py --data corpus.jsonl                                 one process
  torchrun --standalone --nproc_per_node=2 train.py --data ...        DDP (gloo on CPU, nccl on CUDA)
  from train import TrainConfig, train; train(TrainConfig(...))       em.py (process group optional, never destroyed)
Data: --data is a JSONL corpus (tokenised at start-up into in-memory arrays) or a token shard directory from
`python -m data.prepare` (memmapped: memory and start-up flat in corpus size). data/loader.Rows lays each
epoch's documents out in --layout and packs them into document-aligned rows (every row starts at a document's
BOS, best-fit, padded), so a latent always sees the text before it in its document. A global step takes the
next batch_size * world * accum rows; each rank reads only its own share, so the data order does not depend on
the number of ranks, and the loss is the token sum divided by the global target count (DDP == one process).
Checkpoints: out/ckpt/ (checkpoint.save + optim.safetensors, one atomic directory, with the rows' cursor);
metrics: out/metrics.jsonl.
"""
import argparse
import contextlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from checkpoint import load, load_model, resolve_checkpoint, save
from common import bf16_native, device_error, pick_device, setup_dist
from data.cli import add_flags, opt, out_dir_error, parser_error
from data.corpus import atomic_dir, out_lock, write_atomic
from data.layout import MODES
from data.loader import Rows, open_corpus, val_windows
from data.shards import is_shard_dir
from data.tokenizer import check_tokenizer, get_tokenizer, tokenizer_error
from memory import train_errors
from model import GPT, GPTConfig


DTYPES = ("auto", "bf16", "fp32")


@dataclass
class TrainConfig:
    data: str = opt("", "training corpus: JSONL of documents ({'chunks': [{'suffix', 'latent'}]} or {'text'}), or a "
                        "token shard directory written by python -m data.prepare (memmapped, any size)")
    val: str = opt("", "held-out documents (JSONL or shard directory): loss on the raw layout and, for latent "
                       "layouts, on --layout")
    layout: str = opt("raw", "training layout (data/layout.py)", MODES)
    out: str = opt("out/train", "output directory: ckpt/ and metrics.jsonl")
    init: str = opt("scratch", "'scratch', one of our checkpoints, or a Hugging Face GPT-2 / Llama directory")
    tokenizer: str = opt("bytes", "bytes | gpt2 | a Hugging Face directory with tokenizer.json or tokenizer.model")
    bpe_dir: str = opt("", "directory with GPT-2's vocab.bpe + encoder.json (gpt2 tokenizer)")
    n_layer: int = opt(GPTConfig.n_layer, "layers (scratch only)")
    n_head: int = opt(GPTConfig.n_head, "attention heads (scratch only)")
    n_embd: int = opt(GPTConfig.n_embd, "width (scratch only)")
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
                             "and on CPUs with native bf16 (AVX512-BF16 / AMX flags)", DTYPES)
    compile: bool = opt(False, "torch.compile the model")
    device: str = opt("auto", "auto = cuda:LOCAL_RANK if available, else cpu")
    eval_every: int = opt(200, "held-out evaluation every N steps (and at the end); 0 = only at the end")
    ckpt_every: int = opt(500, "checkpoint every N steps (and at the end); 0 = only at the end")
    log_every: int = opt(20, "progress line every N steps; 0 = silent")
    seed: int = opt(1337, "seed of the init, the data order, the layout coins and dropout")
    resume: bool = opt(False, "continue from out/ckpt exactly where it stopped (starts at step 0 if none)")

    def errors(self):
        """The checks on values alone (no file is looked at): train.py's flag check and em.py's check of the
        configurations it will pass here both run these. -> one-line messages, each naming its flag."""
        f = lambda name: "--" + name.replace("_", "-")
        errors = [f"{getattr(self, name)!r}: choose one of {', '.join(choices)} ({f(name)})" for name, choices in
                  (("layout", MODES), ("dtype", DTYPES)) if getattr(self, name) not in choices]
        errors += [f"{tokenizer_error(self.tokenizer)} (--tokenizer)"] if tokenizer_error(self.tokenizer) else []
        positive = ("n_layer", "n_head", "n_embd", "max_steps", "batch_size", "lr")
        non_negative = ("block_size", "stop_at", "total_batch_tokens", "min_lr", "warmup_steps", "weight_decay",
                        "grad_clip", "eval_every", "ckpt_every", "log_every")
        for name in positive + non_negative:
            v = getattr(self, name)
            if (v <= 0 if name in positive else v < 0) or (isinstance(v, float) and not math.isfinite(v)):
                errors.append(f"must be {'positive' if name in positive else '>= 0'}, got {v} ({f(name)})")
        if not 0 <= self.seed < 2**63:
            errors.append(f"must be in [0, 2**63), got {self.seed} (--seed)")
        if self.min_lr > self.lr:
            errors.append(f"{self.min_lr} exceeds --lr {self.lr} (--min-lr)")
        if GPTConfig.head_error(self.n_embd, self.n_head):
            errors.append(f"{GPTConfig.head_error(self.n_embd, self.n_head)} (--n-embd)")
        return errors


# Settings that shape the trajectory: a resumed run must use the checkpoint's (0 / 'auto' mean "as saved").
RESUME_SAME = ("data", "layout", "init", "tokenizer", "n_layer", "n_head", "n_embd", "block_size", "batch_size",
               "total_batch_tokens", "lr", "min_lr", "warmup_steps", "weight_decay", "grad_clip", "dtype", "seed")


def flag_errors(cfg):
    """Every flag checked before anything starts (files exist, values in range); -> one-line messages, each
    naming its flag. The corpus and --init are read in full before training (open_corpus, build_model)."""
    f = lambda name: "--" + name.replace("_", "-")
    errors = [] if cfg.data else ["a training corpus is required (--data)"]
    for name in ("data", "val"):
        path = getattr(cfg, name)
        if path and not os.path.exists(path):
            errors.append(f"{path}: no such file ({f(name)})")
        elif path and os.path.isdir(path) and not is_shard_dir(path):
            errors.append(f"{path}: a directory without a complete shard manifest (unfinished? run python -m "
                          f"data.prepare --corpus JSONL --out {path}) ({f(name)})")
    if cfg.init != "scratch" and not os.path.isdir(cfg.init) and not os.path.isdir(cfg.init + ".old"):
        errors.append(f"{cfg.init}: neither 'scratch' nor a checkpoint directory (--init)")
    errors += cfg.errors() + [e for e in (device_error(cfg.device), out_dir_error(cfg.out)) if e]
    return errors or train_errors(cfg)


def check_flags(cfg):
    """Raise ValueError with every flag problem on one line (main() prints it; em.py validates its own flags)."""
    errors = flag_errors(cfg)
    if errors:
        raise ValueError("; ".join(errors))


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
        model, meta = load(path)
        saved = meta["train_config"]
    except (ValueError, KeyError) as e:
        raise ValueError(f"{path} is not a train.py checkpoint ({e}) (--resume)") from None
    if any(k not in saved for k in RESUME_SAME) or set(meta.get("data", {})) != {"epoch", "row"}:
        raise ValueError(f"{path} was written by another version of train.py: use a fresh --out (--resume)")
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
    # fused: one kernel for all parameters (faster than foreach on CPU and CUDA)
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
    """checkpoint.save's files plus optim.safetensors, all in one atomic directory (old or new, never half)."""
    with atomic_dir(path) as tmp:
        save(model, tmp, meta)
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
    rank, world, local_rank, owned = setup_dist(cfg.device)
    try:
        with out_lock(cfg.out) if rank == 0 else contextlib.nullcontext():  # one run per --out
            return _train(cfg, rank, world, local_rank)
    finally:
        if owned:
            dist.destroy_process_group()


@dataclass
class Run:
    """What the training loop works with; `setup` builds it."""
    cfg: TrainConfig
    rank: int
    world: int
    device: torch.device
    tok: object  # data/tokenizer.Tokenizer
    model: GPT
    fwd: torch.nn.Module  # the model as the loop calls it: compiled and / or wrapped in DDP
    opt: torch.optim.Optimizer
    names: list  # parameter names in the optimizer's order (checkpoint keys)
    rows: Rows  # the training rows, at the saved cursor
    vals: dict  # metric name -> held-out (x, y) windows
    ctx: object  # autocast context factory
    accum: int  # micro-batches per optimizer step
    step: int  # the step the run starts at
    train_loss: float = None
    metrics: object = None  # metrics.jsonl on rank 0

    def log(self, *a):
        if self.rank == 0:
            print(*a)

    def write(self, rec):
        if self.metrics:
            self.metrics.write(json.dumps(rec) + "\n")
            self.metrics.flush()


def load_tokenizer(cfg):
    try:
        return get_tokenizer(cfg.tokenizer, cfg.bpe_dir or None)
    except (ValueError, FileNotFoundError) as e:
        raise ValueError(f"{e} (--tokenizer)") from None


def settle(cfg, model, world, device):
    """Fill in what the flags leave to the model and the machine (the model's shape, the block size, tokens per
    step, the dtype); -> the micro-batches per optimizer step."""
    cfg.n_layer, cfg.n_head, cfg.n_embd = model.config.n_layer, model.config.n_head, model.config.n_embd
    T = cfg.block_size = cfg.block_size or model.config.block_size
    if T > model.config.block_size:
        raise ValueError(f"{T} exceeds the model's block_size {model.config.block_size} (--block-size)")
    micro = cfg.batch_size * T * world
    cfg.total_batch_tokens = cfg.total_batch_tokens or micro
    if cfg.total_batch_tokens % micro:
        raise ValueError(f"{cfg.total_batch_tokens} is not a multiple of batch_size*block_size*world = "
                         f"{cfg.batch_size}*{T}*{world} = {micro} (--total-batch-tokens)")
    if cfg.dtype == "auto":
        choice = ["bf16" if bf16_native(device) else "fp32"]
        if world > 1:  # rank 0's choice for all: ranks on different hosts could disagree
            dist.broadcast_object_list(choice, src=0)
        cfg.dtype = choice[0]
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return cfg.total_batch_tokens // micro


def setup(cfg, rank, world, local_rank):
    """Tokenizer, model (scratch, --init or the checkpoint resumed), cfg settled, data, optimizer, DDP -> Run."""
    device = pick_device(cfg.device, local_rank)
    log = print if rank == 0 else (lambda *a, **k: None)
    tok = load_tokenizer(cfg)
    docs = open_corpus(tok, cfg.data)  # read (and refused with file:line) before a model is built
    vdocs = open_corpus(tok, cfg.val) if cfg.val else None
    state = resume_state(cfg, os.path.join(cfg.out, "ckpt")) if cfg.resume else None
    if state is None and cfg.resume:
        log(f"resume: no checkpoint in {os.path.join(cfg.out, 'ckpt')} yet, starting at step 0")
    model, meta, path = state or (build_model(cfg, tok), {"step": 0, "data": {}}, None)
    accum = settle(cfg, model, world, device)
    ctx = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if cfg.dtype == "bf16" else contextlib.nullcontext
    rows = Rows(tok, docs, cfg.layout, cfg.seed, cfg.block_size, **meta["data"])
    vals = {}
    if cfg.val:
        for name, mode in (("val_loss", "raw"), ("val_loss_latent", cfg.layout))[:1 if cfg.layout == "raw" else 2]:
            vals[name] = tuple(map(torch.from_numpy, val_windows(tok, vdocs, mode, cfg.seed, cfg.block_size)))
    model.to(device)
    opt, names = make_optimizer(model, cfg, device)
    if path is not None:
        load_optim(opt, names, path)
    fwd = torch.compile(model) if cfg.compile else model
    if world > 1:
        fwd = torch.nn.parallel.DistributedDataParallel(fwd, device_ids=[local_rank] if device.type == "cuda" else None)
    log(f"config: {json.dumps(asdict(cfg))}")
    log(f"model: {model.num_params() / 1e6:.2f}M params | {len(docs)} docs | world {world} | accum {accum} | "
        f"{cfg.total_batch_tokens} tokens/step")
    if rank == 0:
        os.makedirs(cfg.out, exist_ok=True)
    return Run(cfg, rank, world, device, tok, model, fwd, opt, names, rows, vals, ctx, accum, meta["step"],
               meta.get("train_loss"))


def next_batch(r):
    """This rank's share of the next global batch (accum x world x batch_size rows: it reads its own and skips
    the others'): accum (x, y) micro-batches, and the global target count the summed loss is divided by."""
    B, batch = r.cfg.batch_size, []
    for _ in range(r.accum):
        r.rows.skip(r.rank * B)
        x, y = r.rows.next_rows(B)  # (B, W <= T), y = -1 on padding
        batch.append((torch.from_numpy(x), torch.from_numpy(y)))
        r.rows.skip((r.world - 1 - r.rank) * B)
    n = torch.tensor(float(sum(int((y >= 0).sum()) for _, y in batch)))
    if r.world > 1:
        dist.all_reduce(n)
    return batch, max(float(n), 1.0)  # the global batch's targets (padding left out): DDP == one process


def train_step(r, batch, count):
    """Forward and backward over this rank's micro-batches (gradients synced on the last), clip, AdamW step;
    -> this rank's summed loss (a tensor: read only when logged, so no sync per step)."""
    loss_sum = torch.zeros((), device=r.device)
    for i, (x, y) in enumerate(batch):
        xb, yb = x.to(r.device, non_blocking=True), y.to(r.device, non_blocking=True)
        sync = r.fwd.no_sync() if r.world > 1 and i < r.accum - 1 else contextlib.nullcontext()
        with sync:
            with r.ctx():
                _, loss = r.fwd(xb, yb, loss_reduction="sum")
            (loss * (r.world / count)).backward()  # DDP averages over ranks; the world factor undoes it
        loss_sum += loss.detach()
    if r.cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(r.model.parameters(), r.cfg.grad_clip)
    r.opt.step()
    r.opt.zero_grad(set_to_none=True)
    return loss_sum


def run_eval(r, step):
    res = {k: evaluate(r.model, w, r.cfg.batch_size, r.rank, r.world, r.ctx, r.device) for k, w in r.vals.items()}
    if res:
        r.log(f"step {step} | " + " | ".join(f"{k} {v:.4f}" for k, v in res.items()))
        r.write({"step": step, **res})
    return res


def checkpoint(r, step, train_loss):
    if r.rank == 0:
        save_checkpoint(os.path.join(r.cfg.out, "ckpt"), r.model, r.opt, r.names, {
            "tokenizer": r.tok.name, "train_config": asdict(r.cfg), "step": step, "train_loss": train_loss,
            "data": r.rows.cursor()})
    if r.world > 1:
        dist.barrier()  # nobody returns (or reads the checkpoint) before it exists


def _train(cfg, rank, world, local_rank):
    """nanoGPT's loop: lr, batch, forward/backward, step; a progress line, held-out loss and a checkpoint on
    their schedules; the held-out loss at the end."""
    r = setup(cfg, rank, world, local_rank)
    step = start = r.step
    stop = min(cfg.max_steps, cfg.stop_at or cfg.max_steps)
    mpath = os.path.join(cfg.out, "metrics.jsonl")
    if rank == 0 and cfg.resume:
        keep_metrics(mpath, start, stop)
    r.metrics = open(mpath, "a" if cfg.resume else "w") if rank == 0 else None
    train_loss = r.train_loss
    busy, n_busy, win, n_win = 0.0, 0, 0.0, 0  # step times (no eval/checkpoint): whole run, log window
    while step < stop:
        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed + 1_000_003 * rank + step)  # dropout: a function of (seed, rank, step)
        lr = lr_at(step, cfg)
        for g in r.opt.param_groups:
            g["lr"] = lr
        batch, count = next_batch(r)
        loss_sum = train_step(r, batch, count)
        step += 1
        dt = time.perf_counter() - t0
        win, n_win = win + dt, n_win + 1
        if step > start + 1:  # the run's throughput leaves out the first step (allocations, compilation)
            busy, n_busy = busy + dt, n_busy + 1
        last = step == stop
        if (cfg.log_every and step % cfg.log_every == 0) or last:
            if world > 1:
                dist.all_reduce(loss_sum)
            train_loss, tok_s = loss_sum.item() / count, cfg.total_batch_tokens * n_win / win
            if cfg.log_every:
                r.log(f"step {step}/{cfg.max_steps} | loss {train_loss:.4f} | lr {lr:.2e} | {tok_s:,.0f} tok/s | "
                      f"eta {(stop - step) * win / n_win:.0f}s")
            r.write({"step": step, "loss": train_loss, "lr": lr, "tok_per_s": tok_s, "time": time.time()})
            win, n_win = 0.0, 0
        if r.vals and cfg.eval_every and step % cfg.eval_every == 0 and not last:
            run_eval(r, step)
        if (cfg.ckpt_every and step % cfg.ckpt_every == 0) or last:
            checkpoint(r, step, train_loss)
    res = run_eval(r, step) if r.vals else {}
    if r.metrics:
        r.metrics.close()
    return {"ckpt": os.path.join(cfg.out, "ckpt"), "steps": step, "tokens": step * cfg.total_batch_tokens,
            "train_loss": train_loss, "val_loss": res.get("val_loss"), "val_loss_latent": res.get("val_loss_latent"),
            "tok_per_s": n_busy * cfg.total_batch_tokens / busy if n_busy else None, "config": asdict(cfg)}


# ----------------------------------------------------------------------------- CLI

def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # --tokenizer: a name or a directory, rejected by argparse like a bad choice
    return add_flags(p, TrainConfig, types={"tokenizer": tokenizer_arg})


def tokenizer_arg(s):
    if tokenizer_error(s):
        raise argparse.ArgumentTypeError(tokenizer_error(s))
    return s


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
