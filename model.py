"""The GPT: GPT-2 layout (nanoGPT lineage), one set of weights for p(Z, X) and q(Z | X).

References: karpathy/nanoGPT model.py (layout, init, from_pretrained), gpt-fast/nanochat (static KV cache).
- forward(idx, targets): training and teacher-forced scoring, logits in fp32.
- forward(idx, cache=, rows=, lengths=): prefill right-padded ragged prompts into chosen rows of a KVCache.
- forward(idx, cache=): decode one token for every cache row at its own position.
- from_pretrained(dir): a Hugging Face GPT-2 directory (config.json + model.safetensors), safetensors only.
- save / load: our checkpoints, model.safetensors + config.json, written atomically (see `atomic_dir`).
"""
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from kernels.attention import decode_attn, flash_attn


@dataclass
class GPTConfig:
    block_size: int = 256  # max sequence length (learned positions)
    vocab_size: int = 261  # real vocabulary (tokenizer n_vocab); the embedding is padded up to a multiple of 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True

    @property
    def padded_vocab(self):
        return -(-self.vocab_size // 64) * 64

    def __post_init__(self):
        if min(self.block_size, self.vocab_size, self.n_layer, self.n_head, self.n_embd) <= 0:
            raise ValueError(f"GPTConfig sizes must be positive: {self}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")


class KVCache:
    """Static cache for batched generation: k, v (L, B, S, H, D) preallocated once; seqlens (B,) int32 on device
    says how many positions of each row are valid. Rows are independent: a row can be refilled (prefill) while
    the others keep decoding."""

    def __init__(self, config, batch_size, max_len, device, dtype=torch.float32):
        if max_len > config.block_size:
            raise ValueError(f"cache length {max_len} exceeds block_size {config.block_size}")
        H, D = config.n_head, config.n_embd // config.n_head
        shape = (config.n_layer, batch_size, max_len, H, D)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.seqlens = torch.zeros(batch_size, device=device, dtype=torch.int32)
        self.max_len = max_len


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, layer, cache=None, rows=None):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).view(B, T, 3, self.n_head, C // self.n_head).unbind(2)  # each (B, T, H, D)
        if cache is not None and rows is None:  # decode: one token per cache row, written at its own position
            pos = cache.seqlens.long().clamp(max=cache.max_len - 1)  # (B,) finished rows may sit at the end
            ar = torch.arange(B, device=x.device)
            cache.k[layer, ar, pos] = k[:, 0].to(cache.k.dtype)
            cache.v[layer, ar, pos] = v[:, 0].to(cache.v.dtype)
            y = decode_attn(q, cache.k[layer], cache.v[layer], (pos + 1).int())
        else:  # training / prefill: causal attention over the new tokens only (prefilled rows start empty)
            if cache is not None:
                cache.k[layer, rows, :T] = k.to(cache.k.dtype)
                cache.v[layer, rows, :T] = v.to(cache.v.dtype)
            y = flash_attn(q, k, v, causal=True)
        return self.resid_dropout(self.c_proj(y.reshape(B, T, C)))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))  # GPT-2's gelu_new


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, layer, cache=None, rows=None):
        x = x + self.attn(self.ln_1(x), layer, cache, rows)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.padded_vocab, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied, as in GPT-2
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer)
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self):
        return sum(p.numel() for p in self.parameters()) - self.transformer.wpe.weight.numel()

    def forward(self, idx, targets=None, cache=None, rows=None, lengths=None, loss_reduction="mean"):
        """idx (B, T) token ids.
        No cache: logits (B, T, V) in fp32, and the cross-entropy over targets != -1 ('mean', or 'sum' for
        callers that normalise by a global token count; an all-ignored batch gives 0, never NaN).
        cache + rows (B,) + lengths (B,): prefill right-padded prompts into cache rows `rows` from position 0;
          returns fp32 logits (B, V) at each row's last valid position.
        cache alone: idx (B, 1) is the next token of every cache row; returns logits (B, V), advances seqlens."""
        B, T = idx.shape
        if cache is not None and rows is None:
            if T != 1 or B != cache.seqlens.numel():
                raise ValueError(f"decode takes one token per cache row, got {tuple(idx.shape)}")
            pos = cache.seqlens.long().clamp(max=self.config.block_size - 1)[:, None]  # (B, 1)
        else:
            if T > self.config.block_size:
                raise ValueError(f"sequence of length {T} exceeds block_size {self.config.block_size}")
            pos = torch.arange(T, device=idx.device)[None, :]  # (1, T)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for i, block in enumerate(self.transformer.h):
            x = block(x, i, cache, rows)
        x = self.transformer.ln_f(x)
        V = self.config.vocab_size
        if cache is not None:
            if rows is None:
                cache.seqlens += 1
                x = x[:, 0]
            else:
                lengths = torch.full((B,), T, device=idx.device) if lengths is None else lengths.to(idx.device)
                cache.seqlens[rows] = lengths.int()
                x = x[torch.arange(B, device=idx.device), lengths.long() - 1]  # (B, C) last valid position
            return self.lm_head(x).float()[:, :V]
        logits = self.lm_head(x).float()[..., :V]  # padded rows sliced off; fp32 for log-softmax/CE
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-1, reduction="sum")
        if loss_reduction == "mean":
            loss = loss / (targets != -1).sum().clamp(min=1)
        return logits, loss

    # ------------------------------------------------------------------------- vocabulary

    def resize_vocab(self, vocab_size, seed=0):
        """Grow the vocabulary (e.g. GPT-2's 50257 + the 4 latent tokens). New rows ~ N(0, n_embd^-1/2) clamped
        at 3 sigma (the authors' choice); existing rows are kept."""
        old_rows = self.config.vocab_size
        if vocab_size < old_rows:
            raise ValueError(f"cannot shrink the vocabulary from {old_rows} to {vocab_size}")
        self.config.vocab_size = vocab_size
        wte = self.transformer.wte.weight
        new = torch.empty(self.config.padded_vocab, wte.size(1), dtype=wte.dtype)
        std = wte.size(1) ** -0.5
        g = torch.Generator().manual_seed(seed)
        new.normal_(0.0, std, generator=g).clamp_(-3 * std, 3 * std)
        new[:old_rows] = wte.detach()[:old_rows].cpu()
        self.transformer.wte.weight = nn.Parameter(new.to(wte.device))
        self.lm_head.weight = self.transformer.wte.weight
        return self

    # ------------------------------------------------------------------------- Hugging Face GPT-2

    @classmethod
    def from_pretrained(cls, path, vocab_size=None, block_size=None):
        """Load a Hugging Face GPT-2 directory (config.json + model.safetensors) without transformers or pickle.
        Accepts 'transformer.h.0...' (save_pretrained) and 'h.0...' (the hub's gpt2 files) key styles; Conv1D
        weights are (in, out) and get transposed; attn.bias / attn.masked_bias buffers are ignored.
        vocab_size grows the vocabulary (latent tokens); block_size crops the learned positions."""
        cfg_path, st_path = os.path.join(path, "config.json"), os.path.join(path, "model.safetensors")
        for p in (cfg_path, st_path):
            if not os.path.isfile(p):
                raise FileNotFoundError(f"not a GPT-2 checkpoint directory: {p} is missing")
        try:
            hf = json.load(open(cfg_path))
            config = GPTConfig(block_size=hf.get("n_positions", hf.get("n_ctx")), vocab_size=hf["vocab_size"],
                               n_layer=hf["n_layer"], n_head=hf["n_head"], n_embd=hf["n_embd"], bias=True)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{cfg_path}: unreadable GPT-2 config ({type(e).__name__}: {e})") from None
        # variants this GPT-2 layout does not implement would load without error and compute something else
        ok = dict(model_type=("gpt2",), activation_function=("gelu_new",), n_inner=(None, 4 * config.n_embd),
                  layer_norm_epsilon=(1e-5,), scale_attn_by_inverse_layer_idx=(False,))
        unsupported = {k: hf[k] for k in ok if k in hf and hf[k] not in ok[k]}
        if unsupported:
            raise ValueError(f"{cfg_path}: unsupported GPT-2 variant {unsupported}")
        sd = _read_safetensors(st_path)
        sd = {(k if k.startswith(("transformer.", "lm_head.")) else "transformer." + k): v for k, v in sd.items()}
        sd = {k: v for k, v in sd.items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
        sd.pop("lm_head.weight", None)  # tied to wte
        conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
        sd = {k: (v.t() if k.endswith(conv1d) else v) for k, v in sd.items()}
        wte = sd.pop("transformer.wte.weight")
        model = cls(config)
        missing, unexpected = model.load_state_dict(sd, strict=False)
        missing = [k for k in missing if k not in ("transformer.wte.weight", "lm_head.weight")]
        if missing or unexpected:
            raise ValueError(f"{st_path}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
        with torch.no_grad():
            model.transformer.wte.weight[:config.vocab_size] = wte
        if vocab_size is not None and vocab_size != config.vocab_size:
            model.resize_vocab(vocab_size)
        if block_size is not None:
            model.crop_block_size(block_size)
        return model

    def crop_block_size(self, block_size):
        if block_size > self.config.block_size:
            raise ValueError(f"block_size {block_size} exceeds the model's {self.config.block_size}")
        self.config.block_size = block_size
        self.transformer.wpe.weight = nn.Parameter(self.transformer.wpe.weight[:block_size].detach().clone())

    # ------------------------------------------------------------------------- our checkpoints

    def save(self, path, meta=None):
        """Write path/{model.safetensors, config.json} atomically; meta (tokenizer name, training state...) goes
        into config.json beside the model config."""
        if "model" in (meta or {}):
            raise ValueError("meta key 'model' is reserved for the model config")
        sd = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items() if k != "lm_head.weight"}
        with atomic_dir(path) as tmp:
            save_file(sd, os.path.join(tmp, "model.safetensors"))
            with open(os.path.join(tmp, "config.json"), "w") as f:
                json.dump({"model": asdict(self.config), **(meta or {})}, f, indent=1)

    @classmethod
    def load(cls, path, device="cpu"):
        """Our checkpoint -> (model, meta). Falls back to the previous copy if a save was interrupted."""
        path = resolve_checkpoint(path)
        try:
            meta = json.load(open(os.path.join(path, "config.json")))
            known = {f.name for f in fields(GPTConfig)}
            config = GPTConfig(**{k: v for k, v in meta.pop("model").items() if k in known})
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: unreadable checkpoint config ({e})") from None
        model = cls(config)
        sd = _read_safetensors(os.path.join(path, "model.safetensors"))
        if "transformer.wte.weight" not in sd:
            raise ValueError(f"{path}: weights do not match the config (missing transformer.wte.weight)")
        sd["lm_head.weight"] = sd["transformer.wte.weight"]
        try:
            model.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            detail = "; ".join(line.strip() for line in str(e).splitlines()[1:3])  # line 0 is a bare header
            raise ValueError(f"{path}: weights do not match the config ({detail[:400]})") from None
        return model.to(device), meta


def _read_safetensors(p):
    try:
        return load_file(p)
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{p}: not a readable safetensors file ({e})") from None


class atomic_dir:
    """`with atomic_dir(path) as tmp:` write files into tmp; on success tmp replaces path. A kill at any moment
    leaves either the old or the new directory (the old one renamed to path + '.old' for an instant, which
    `resolve_checkpoint` falls back to)."""

    def __init__(self, path):
        self.path = os.path.normpath(path)
        self.tmp = f"{self.path}.tmp{os.getpid()}"

    def __enter__(self):
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.makedirs(self.tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        old = self.path + ".old"
        if os.path.exists(self.path):  # else a lone .old (an earlier interrupted save) stays until the rename
            shutil.rmtree(old, ignore_errors=True)
            os.rename(self.path, old)
        os.rename(self.tmp, self.path)
        shutil.rmtree(old, ignore_errors=True)
        return False


def resolve_checkpoint(path):
    path = os.path.normpath(path)
    for p in (path, path + ".old"):
        if os.path.isfile(os.path.join(p, "config.json")) and os.path.isfile(os.path.join(p, "model.safetensors")):
            return p
    raise FileNotFoundError(f"no checkpoint at {path} (expected config.json + model.safetensors)")


def load_model(path, vocab_size=None, device="cpu"):
    """Our checkpoint or a Hugging Face GPT-2 directory -> (model, meta). A GPT-2 directory gets its vocabulary
    grown to vocab_size (the latent tokens) and meta {'tokenizer': 'gpt2'}."""
    cfg = os.path.join(resolve_dir(path), "config.json")
    try:
        is_ours = "model" in json.load(open(cfg))
    except (OSError, ValueError) as e:
        raise ValueError(f"{cfg}: unreadable ({e})") from None
    if is_ours:
        return GPT.load(path, device)
    return GPT.from_pretrained(path, vocab_size=vocab_size).to(device), {"tokenizer": "gpt2", "init": path}


def resolve_dir(path):
    if os.path.isfile(os.path.join(path, "config.json")):
        return path
    return resolve_checkpoint(path)
