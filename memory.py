"""What a model needs and what this machine has: floors, not forecasts, so a size flag is refused only when even
the floor cannot fit (no command that would run is refused). The floors (param_count, train_bytes, kv_cache_bytes),
the memory here (device_bytes), and the checks train.py and sample.py make with them (em.py's: data/rundir.py
size_errors)."""
import math
import os
from dataclasses import replace

import torch

from checkpoint import check_checkpoint, our_tensors
from data.tokenizer import get_tokenizer
from model import GPTConfig

# a floor of the Python memory generate() keeps per sequence, and per new token (its id and two log-probs):
# measured with tracemalloc, 1.3 KB at 8 new tokens and 10.3 KB at 128 (about 400 + 75 a token)
SEQ_BYTES, TOKEN_BYTES = 256, 64


def param_count(config):
    """Parameters of GPT(config) (a tied head counted once), from the shapes alone: nothing is allocated."""
    fixed, _, _, block, n_layer = our_tensors(config)
    size = lambda shapes: sum(math.prod(s) for s in shapes.values())
    return size(fixed) + n_layer * size(block)


def train_bytes(config, batch, T, step_tokens):
    """A floor of one training step's memory on one rank: fp32 weights, gradients and both AdamW moments (16 bytes
    a parameter); per token, a dozen saved activations of width n_embd in every block (bf16: 2 bytes each) and
    the fp32 logits with their log-softmax (8 bytes a vocabulary row); and the step's (x, y) int64 windows."""
    C, V = config.n_embd, config.padded_vocab
    return 16 * param_count(config) + batch * T * (24 * C * config.n_layer + 8 * V) + 16 * step_tokens


def kv_cache_bytes(config, rows, T, elem=4):
    """sample.generate's static cache for `rows` sequences of T positions (k and v, every layer, fp32 on the CPU)
    plus a step's fp32 logits."""
    kv = config.kv_heads * (config.n_embd // config.n_head)
    return 2 * config.n_layer * rows * T * kv * elem + 4 * rows * config.padded_vocab


def device_bytes(device="cpu"):
    """Memory a rank can use: a CUDA device's, or this host's RAM shared by its local ranks (LOCAL_WORLD_SIZE).
    'auto' is the device train.py and em.py pick: cuda:LOCAL_RANK when CUDA is there, else the CPU."""
    if device == "auto":
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device.index or 0).total_memory
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return ram // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def gb(n):
    """Bytes as a short human figure."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n / 1e3:.1f} KB"


def train_errors(cfg):
    """train.py's check once every flag is in range: --init checked without loading a weight
    (checkpoint.check_checkpoint: config, tensor names and shapes, tokenizer), the window against the model's, and the
    sizes against this machine (a training step's floor, train_bytes: the model, --batch-size,
    --total-batch-tokens). -> one-line messages."""
    try:
        tok = get_tokenizer(cfg.tokenizer, cfg.bpe_dir or None)
    except (ValueError, OSError) as e:
        return [f"{e} (--tokenizer)"]
    if cfg.init == "scratch":
        config = GPTConfig(block_size=cfg.block_size or 256, vocab_size=tok.n_vocab, n_layer=cfg.n_layer,
                           n_head=cfg.n_head, n_embd=cfg.n_embd)
    else:
        try:
            config, _ = check_checkpoint(cfg.init, tok)
        except ValueError as e:
            return [f"{e} (--init)"]
        config = replace(config, vocab_size=max(config.vocab_size, tok.n_vocab))  # build_model grows it
    T, world = cfg.block_size or config.block_size, int(os.environ.get("WORLD_SIZE", "1"))
    if T > config.block_size:
        return [f"{T} exceeds the model's block_size {config.block_size} (--block-size)"]
    micro, have, P = cfg.batch_size * T * world, device_bytes(cfg.device), param_count(config)
    if cfg.total_batch_tokens % micro:
        return [f"{cfg.total_batch_tokens} is not a multiple of batch_size*block_size*world = {cfg.batch_size}*{T}*"
                f"{world} = {micro} (--total-batch-tokens)"]
    held = (cfg.total_batch_tokens or micro) // world  # tokens of one step's windows on this rank
    one, per_seq = train_bytes(config, 1, T, T), train_bytes(config, 2, T, 0) - train_bytes(config, 1, T, 0)
    if one > have:
        return [f"the model's {P:,} parameters need at least {gb(one)} to train (weights, gradients and AdamW "
                f"moments in fp32, one sequence), more than the {gb(have)} here "
                f"({'--init' if cfg.init != 'scratch' else '--n-layer, --n-embd, --block-size'})"]
    if train_bytes(config, cfg.batch_size, T, cfg.batch_size * T) > have:
        return [f"{cfg.batch_size} sequences of {T} tokens need at least "
                f"{gb(train_bytes(config, cfg.batch_size, T, cfg.batch_size * T))} to train, more than the {gb(have)} "
                f"here: at most {(have - train_bytes(config, 0, T, 0)) // (per_seq + 16 * T)} fit (--batch-size)"]
    if train_bytes(config, cfg.batch_size, T, held) > have:
        fit = (have - train_bytes(config, cfg.batch_size, T, 0)) // 16 * world
        return [f"{cfg.total_batch_tokens} tokens per step are held as int64 windows until the step ends: at least "
                f"{gb(train_bytes(config, cfg.batch_size, T, held))} with the model, more than the {gb(have)} here: "
                f"at most {fit} fit (--total-batch-tokens)"]
    return []


def sample_errors(config, n, M):
    """--num-samples against this machine: generate() keeps every sequence's tokens and log-probs (a floor of
    SEQ_BYTES + TOKEN_BYTES a new token) beside the model and a KV cache of min(n, 64) rows."""
    have, P = device_bytes("cpu"), param_count(config)
    fixed = 4 * P + kv_cache_bytes(config, min(n, 64), config.block_size)
    per = SEQ_BYTES + TOKEN_BYTES * M
    if fixed + n * per > have:
        return (f"{n} samples of {M} new tokens need at least {gb(fixed + n * per)}, more than the {gb(have)} here: "
                f"at most {max(0, (have - fixed) // per)} fit (--num-samples)")
    return None
