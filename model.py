"""The GPT: GPT-2 or Llama layout (nanoGPT lineage), one set of weights for p(Z, X) and q(Z | X).

References: karpathy/nanoGPT model.py (layout, init), gpt-fast/nanochat (static KV cache, a modern block in a
few lines), Hugging Face LlamaForCausalLM (RoPE incl. Llama 3 scaling, GQA, SwiGLU, RMSNorm).
- forward(idx, targets): training and teacher-forced scoring, logits in fp32.
- forward(idx, cache=, rows=, lengths=): prefill right-padded ragged prompts into chosen rows of a KVCache.
- forward(idx, cache=): decode one token for every cache row at its own position (RoPE uses that position).
- resize_vocab(V) grows the vocabulary (the latent tokens); crop_block_size(T) shortens the context.
Checkpoint files (ours, and Hugging Face GPT-2 / Llama directories: save, load, from_pretrained): checkpoint.py.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from kernels.attention import decode_attn, flash_attn

ARCHS = ("gpt2", "llama")


@dataclass
class GPTConfig:
    block_size: int = 256  # max sequence length (gpt2: learned positions; llama: RoPE, any length up to this)
    vocab_size: int = 261  # real vocabulary (tokenizer n_vocab); the embedding is padded up to a multiple of 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True
    arch: str = "gpt2"  # gpt2: LayerNorm, GELU MLP, learned positions | llama: RMSNorm, SwiGLU, RoPE, GQA
    n_kv_head: int = 0  # key/value heads (grouped-query attention); 0 = n_head
    n_inner: int = 0  # MLP hidden width; 0 = 4 * n_embd
    rope_theta: float = 10000.0
    rope_scaling: dict = None  # Llama 3's {factor, low_freq_factor, high_freq_factor, original_max_position_...}
    norm_eps: float = 1e-5
    tie_embeddings: bool = True

    @property
    def padded_vocab(self):
        return -(-self.vocab_size // 64) * 64

    @property
    def kv_heads(self):
        return self.n_kv_head or self.n_head

    @staticmethod
    def head_error(n_embd, n_head):
        """The rule on the attention shape every config and CLI checks: heads split the width evenly."""
        return f"n_embd {n_embd} is not divisible by n_head {n_head}" if n_head > 0 and n_embd % n_head else None

    def __post_init__(self):
        if min(self.block_size, self.vocab_size, self.n_layer, self.n_head, self.n_embd) <= 0:
            raise ValueError(f"GPTConfig sizes must be positive: {self}")
        if self.head_error(self.n_embd, self.n_head):
            raise ValueError(self.head_error(self.n_embd, self.n_head))
        for bad, msg in ((self.arch not in ARCHS, f"unknown arch {self.arch!r}; choose one of {', '.join(ARCHS)}"),
                         (self.n_kv_head < 0 or self.n_head % self.kv_heads, "n_head is not a multiple of n_kv_head"),
                         (self.arch == "llama" and self.n_embd // self.n_head % 2, "RoPE needs an even head dim"),
                         (self.arch == "gpt2" and (self.kv_heads != self.n_head or not self.tie_embeddings),
                          "the gpt2 layout has n_kv_head = n_head and tied embeddings")):
            if bad:
                raise ValueError(f"{msg}: {self}")


def rope_inv_freq(config):
    """(D/2,) fp32 RoPE frequencies theta^(-2i/D); with Llama 3's rope_scaling the long wavelengths are slowed
    down by `factor` and the middle band interpolated (as transformers' _compute_llama3_parameters)."""
    D = config.n_embd // config.n_head
    inv = 1.0 / (config.rope_theta ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    s = config.rope_scaling
    if not s:
        return inv
    factor, lo, hi = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
    old = s["original_max_position_embeddings"]  # the context length the model was pretrained at
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > old / lo, inv / factor, inv)
    smooth = (old / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old / hi) & ~(wavelen > old / lo)
    return torch.where(medium, smoothed, scaled)


def rotary(x, cos, sin):
    """Rotate pairs (i, i + D/2) of x (B, T, H, D) by the angles whose cos/sin are (B or 1, T, 1, D/2)."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class KVCache:
    """Static cache for batched generation: k, v (L, B, S, Hkv, D) preallocated once (Hkv key/value heads: GQA
    caches each shared head once); seqlens (B,) int32 on device says how many positions of each row are valid.
    Rows are independent: a row can be refilled (prefill) while the others keep decoding."""

    def __init__(self, config, batch_size, max_len, device, dtype=torch.float32):
        if max_len > config.block_size:
            raise ValueError(f"cache length {max_len} exceeds block_size {config.block_size}")
        H, D = config.kv_heads, config.n_embd // config.n_head
        shape = (config.n_layer, batch_size, max_len, H, D)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.seqlens = torch.zeros(batch_size, device=device, dtype=torch.int32)
        self.max_len = max_len

    def first_rows(self, m):
        """A KVCache over the first m rows, sharing this one's memory (the tail of a generate call runs on fewer
        rows)."""
        view = KVCache.__new__(KVCache)
        view.k, view.v, view.seqlens, view.max_len = self.k[:, :m], self.v[:, :m], self.seqlens[:m], self.max_len
        return view


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.kv_heads, config.n_embd // config.n_head
        kv_dim = self.n_kv_head * self.head_dim
        self.c_attn = nn.Linear(config.n_embd, config.n_embd + 2 * kv_dim, bias=config.bias)  # q, k, v fused
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, layer, cache=None, rows=None, rope=None):
        B, T, C = x.shape
        H, Hkv, D = self.n_head, self.n_kv_head, self.head_dim
        q, k, v = self.c_attn(x).split([C, Hkv * D, Hkv * D], dim=-1)
        q, k, v = q.view(B, T, H, D), k.view(B, T, Hkv, D), v.view(B, T, Hkv, D)  # views of the fused output
        if rope is not None:  # llama: rotate q and k by their absolute positions (per row when decoding)
            q, k = rotary(q, *rope), rotary(k, *rope)
        if cache is not None and rows is None:  # decode: one token per cache row, written at its own position
            pos = cache.seqlens.long().clamp(max=cache.max_len - 1)  # (B,) finished rows may sit at the end
            ar = torch.arange(B, device=x.device)
            cache.k[layer, ar, pos] = k[:, 0].to(cache.k.dtype)
            cache.v[layer, ar, pos] = v[:, 0].to(cache.v.dtype)
            k, v = cache.k[layer], cache.v[layer]  # (B, S, Hkv, D)
            y = decode_attn(q, *_repeat_kv(k, v, H // Hkv), (pos + 1).int())
        else:  # training / prefill: causal attention over the new tokens only (prefilled rows start empty)
            if cache is not None:
                cache.k[layer, rows, :T] = k.to(cache.k.dtype)
                cache.v[layer, rows, :T] = v.to(cache.v.dtype)
            y = flash_attn(q, *_repeat_kv(k, v, H // Hkv), causal=True)
        return self.resid_dropout(self.c_proj(y.reshape(B, T, C)))


def _repeat_kv(k, v, n_rep):
    """GQA outside the kernels: (B, S, Hkv, D) -> (B, S, Hkv * n_rep, D), query head h reads kv head h // n_rep."""
    if n_rep == 1:
        return k, v
    return k.repeat_interleave(n_rep, dim=2), v.repeat_interleave(n_rep, dim=2)


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.swiglu = config.arch == "llama"
        hidden = config.n_inner or 4 * config.n_embd
        self.c_fc = nn.Linear(config.n_embd, (2 if self.swiglu else 1) * hidden, bias=config.bias)  # llama: gate, up
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        if self.swiglu:
            gate, up = self.c_fc(x).chunk(2, dim=-1)
            return self.dropout(self.c_proj(F.silu(gate) * up))
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))  # GPT-2's gelu_new


def norm(config):
    llama = config.arch == "llama"
    return nn.RMSNorm(config.n_embd, eps=config.norm_eps) if llama else nn.LayerNorm(config.n_embd, bias=config.bias)


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = norm(config)
        self.mlp = MLP(config)

    def forward(self, x, layer, cache=None, rows=None, rope=None):
        x = x + self.attn(self.ln_1(x), layer, cache, rows, rope)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        gpt2 = config.arch == "gpt2"
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.padded_vocab, config.n_embd),
            **(dict(wpe=nn.Embedding(config.block_size, config.n_embd)) if gpt2 else {}),  # llama: RoPE instead
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=norm(config),
        ))
        if not gpt2:  # (D/2,) not saved: a function of the config
            self.register_buffer("inv_freq", rope_inv_freq(config), persistent=False)
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight  # tied, as in GPT-2 (and SmolLM2, Llama 3.2 1B)
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

    def num_params(self):  # without the learned positions, as nanoGPT counts
        return sum(p.numel() for n, p in self.named_parameters() if n != "transformer.wpe.weight")

    def trunk(self, idx, cache=None, rows=None):
        """Embeddings, blocks, final norm -> hidden states (B, T, C); forward() and sample.score apply lm_head."""
        B, T = idx.shape
        if cache is not None and rows is None:
            if T != 1 or B != cache.seqlens.numel():
                raise ValueError(f"decode takes one token per cache row, got {tuple(idx.shape)}")
            pos = cache.seqlens.long().clamp(max=self.config.block_size - 1)[:, None]  # (B, 1)
        else:
            if T > self.config.block_size:
                raise ValueError(f"sequence of length {T} exceeds block_size {self.config.block_size}")
            pos = torch.arange(T, device=idx.device)[None, :]  # (1, T)
        x, rope = self.transformer.wte(idx), None
        if self.config.arch == "gpt2":
            x = x + self.transformer.wpe(pos)
        else:  # angles in fp32 as in transformers; `rotary` casts them to q's dtype
            freqs = (pos[..., None].float() * self.inv_freq.float())[:, :, None, :]  # (B or 1, T, 1, D/2)
            rope = (freqs.cos(), freqs.sin())
        x = self.transformer.drop(x)
        for i, block in enumerate(self.transformer.h):
            x = block(x, i, cache, rows, rope)
        return self.transformer.ln_f(x)

    def forward(self, idx, targets=None, cache=None, rows=None, lengths=None, loss_reduction="mean"):
        """idx (B, T) token ids.
        No cache: logits (B, T, V) in fp32, and the cross-entropy over targets != -1 ('mean', or 'sum' for
        callers that normalise by a global token count; an all-ignored batch gives 0, never NaN).
        cache + rows (B,) + lengths (B,): prefill right-padded prompts into cache rows `rows` from position 0;
          returns fp32 logits (B, V) at each row's last valid position.
        cache alone: idx (B, 1) is the next token of every cache row; returns logits (B, V), advances seqlens."""
        B, T = idx.shape
        x = self.trunk(idx, cache, rows)
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

    # ------------------------------------------------------------------------- vocabulary and context

    def resize_vocab(self, vocab_size, seed=0):
        """Grow the vocabulary (e.g. GPT-2's 50257 + the 4 latent tokens). New rows ~ N(0, n_embd^-1/2) clamped
        at 3 sigma (the authors' choice); existing rows are kept. An untied lm_head grows the same way."""
        old_rows = self.config.vocab_size
        if vocab_size < old_rows:
            raise ValueError(f"cannot shrink the vocabulary from {old_rows} to {vocab_size}")
        self.config.vocab_size = vocab_size
        self.transformer.wte.weight = _grown(self.transformer.wte.weight, old_rows, self.config.padded_vocab, seed)
        if self.config.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight
        else:
            self.lm_head.weight = _grown(self.lm_head.weight, old_rows, self.config.padded_vocab, seed + 1)
        return self

    def crop_block_size(self, block_size):
        if block_size > self.config.block_size:
            raise ValueError(f"block_size {block_size} exceeds the model's {self.config.block_size}")
        self.config.block_size = block_size
        if self.config.arch == "gpt2":
            self.transformer.wpe.weight = nn.Parameter(self.transformer.wpe.weight[:block_size].detach().clone())


def _grown(w, old_rows, rows, seed):
    """w (R, C) -> a Parameter (rows, C): the first old_rows kept, the rest ~ N(0, C^-1/2) clamped at 3 sigma."""
    new = torch.empty(rows, w.size(1), dtype=w.dtype)
    std = w.size(1) ** -0.5
    g = torch.Generator().manual_seed(seed)
    new.normal_(0.0, std, generator=g).clamp_(-3 * std, 3 * std)
    new[:old_rows] = w.detach()[:old_rows].cpu()
    return nn.Parameter(new.to(w.device))
