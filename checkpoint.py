"""Checkpoint files: ours (model.safetensors + config.json) and Hugging Face GPT-2 / Llama directories, read
into model.py's GPT without transformers or pickle (in the manner of nanochat's checkpoint_manager.py).

References: karpathy/nanoGPT model.py `from_pretrained` (GPT-2's names, Conv1D weights transposed), Hugging Face
LlamaForCausalLM's state-dict names, the safetensors format (a JSON header of names, dtypes and shapes, then the
bytes) and transformers' sharded layout (model.safetensors.index.json's weight_map).
- save(model, path, meta) / load(path, device): our checkpoints, written atomically (data/corpus.py `atomic_dir`);
  a save interrupted between its renames leaves path.old, which load falls back to.
- from_pretrained(path, vocab_size, block_size): a Hugging Face directory, every config.json field checked.
- load_model(path, vocab_size, device): either kind -> (model, meta); load_checked: that, its tokenizer checked.
- check_checkpoint(path, tok): everything knowable before a weight is read (config fields, tensor names and
  shapes from the safetensors headers, the tokenizer's fit), so a CLI refuses a bad checkpoint in one line.
"""
import itertools
import json
import math
import os
from dataclasses import asdict

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from common import pick_device
from data.corpus import atomic_dir, read_json
from data.tokenizer import LATENT_SPECIALS, check_tokenizer, tokenizer_id
from model import ARCHS, GPT, GPTConfig


# ----------------------------------------------------------------------------- our checkpoints

def save(model, path, meta=None):
    """Write `model` as path/{model.safetensors, config.json} atomically; meta (tokenizer name, training
    state...) goes into config.json beside the model config."""
    if "model" in (meta or {}):
        raise ValueError("meta key 'model' is reserved for the model config")
    skip = "lm_head.weight" if model.config.tie_embeddings else None
    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k != skip}
    with atomic_dir(path) as tmp:
        save_file(sd, os.path.join(tmp, "model.safetensors"))
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump({"model": asdict(model.config), **(meta or {})}, f, indent=1)


def load(path, device="cpu"):
    """Our checkpoint -> (model, meta). Falls back to the previous copy if a save was interrupted."""
    path = resolve_checkpoint(path)
    cfg_path = os.path.join(path, "config.json")
    try:
        meta = read_json(cfg_path)
        config = our_config(meta.pop("model"), cfg_path)
    except (OSError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable checkpoint config ({type(e).__name__}: {e})") from None
    model = GPT(config)
    sd = _read_safetensors(os.path.join(path, "model.safetensors"))
    if "transformer.wte.weight" not in sd:
        raise ValueError(f"{path}: weights do not match the config (missing transformer.wte.weight)")
    if config.tie_embeddings:
        sd["lm_head.weight"] = sd["transformer.wte.weight"]
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        detail = "; ".join(line.strip() for line in str(e).splitlines()[1:3])  # line 0 is a bare header
        raise ValueError(f"{path}: weights do not match the config ({detail[:400]})") from None
    return model.to(device), meta


def resolve_checkpoint(path):
    path = os.path.normpath(path)
    for p in (path, path + ".old"):
        if os.path.isfile(os.path.join(p, "config.json")) and os.path.isfile(os.path.join(p, "model.safetensors")):
            return p
    raise FileNotFoundError(f"no checkpoint at {path} (expected config.json + model.safetensors)")


def load_model(path, vocab_size=None, device="cpu"):
    """Our checkpoint or a Hugging Face GPT-2 / Llama directory -> (model, meta). A HF directory gets its vocabulary
    grown to vocab_size (the latent tokens) and meta {'tokenizer': 'gpt2'} (GPT-2) or, for Llama, the id of the
    tokenizer it ships (data/tokenizer.py tokenizer_id; None when it ships none) and 'tokenizer_dir'."""
    cfg = os.path.join(resolve_dir(path), "config.json")
    try:
        is_ours = "model" in read_json(cfg)
    except (OSError, ValueError) as e:
        raise ValueError(f"{cfg}: unreadable ({e})") from None
    if is_ours:
        return load(path, device)
    model = from_pretrained(path, vocab_size=vocab_size).to(device)
    return model, hf_meta(path, model.config)


def hf_meta(path, config):
    """What load_model says of a Hugging Face directory: its tokenizer ('gpt2', or a Llama directory's own: None
    when it ships none), where to read it, and that it came from outside ('init')."""
    if config.arch == "gpt2":
        return {"tokenizer": "gpt2", "init": path}
    return {"tokenizer": tokenizer_id(path), "tokenizer_dir": path, "init": path}


def resolve_dir(path):
    if os.path.isfile(os.path.join(path, "config.json")):
        return path
    return resolve_checkpoint(path)


def load_checked(path, tok, device="auto"):
    """load_model on `device` (common.pick_device) in eval mode, its tokenizer checked against `tok` -> (model,
    meta)."""
    model, meta = load_model(path, tok.n_vocab, pick_device(device))
    check_tokenizer(meta, tok)
    return model.eval(), meta


# ----------------------------------------------------------------------------- Hugging Face directories

def from_pretrained(path, vocab_size=None, block_size=None):
    """Load a Hugging Face GPT-2 or Llama directory (config.json + model.safetensors, or shards listed in
    model.safetensors.index.json) without transformers or pickle. GPT-2: 'transformer.h.0...' and the hub's
    'h.0...' keys, Conv1D weights transposed, attn.bias buffers ignored. Llama: q/k/v and gate/up fused.
    vocab_size grows the vocabulary (latent tokens); block_size crops the context."""
    cfg_path = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"not a Hugging Face checkpoint directory: {cfg_path} is missing")
    try:
        hf = read_json(cfg_path)
        if not isinstance(hf, dict):
            raise ValueError(f"{cfg_path}: must hold a JSON object, got {type(hf).__name__}")
        llama = hf.get("model_type") == "llama"
        config = _llama_config(hf, cfg_path) if llama else _gpt2_config(hf, cfg_path)
    except (OSError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
        raise ValueError(f"{cfg_path}: unreadable config ({type(e).__name__}: {e})") from None
    sd, src = _read_hf_weights(path)
    sd = _llama_state_dict(sd, config.n_layer, src) if llama else _gpt2_state_dict(sd)
    wte, head = sd.pop("transformer.wte.weight", None), sd.pop("lm_head.weight", None)
    model = GPT(config)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if k not in ("transformer.wte.weight", "lm_head.weight")]
    missing += [k for k, t in (("transformer.wte.weight", wte), ("lm_head.weight", head))
                if t is None and (k != "lm_head.weight" or not config.tie_embeddings)]
    if missing or unexpected:
        raise ValueError(f"{src}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    with torch.no_grad():
        model.transformer.wte.weight[:config.vocab_size] = wte
        if not config.tie_embeddings:
            model.lm_head.weight[:config.vocab_size] = head
    if vocab_size is not None and vocab_size != config.vocab_size:
        model.resize_vocab(vocab_size)
    if block_size is not None:
        model.crop_block_size(block_size)
    return model


# ----------------------------------------------------------------------------- config.json, field by field

REQUIRED = object()
_is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)
_is_num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
KINDS = {  # how a config.json field is checked: (test, what the message asks for)
    "size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "count": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "positive": (lambda v: _is_num(v) and v > 0, "a finite number > 0"),
    "fraction": (lambda v: _is_num(v) and 0 <= v < 1, "a number in [0, 1)"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "object": (lambda v: isinstance(v, dict), "an object"),
}


def field(d, key, where, kind, default=REQUIRED, name=None):
    """config.json's d[key] checked as `kind` (null counts as absent) -> the value, or `default` when absent.
    Raises ValueError naming the file and the field (`name`, default `key`)."""
    v, (ok, want) = d.get(key), KINDS[kind]
    if v is None:
        if default is REQUIRED:
            raise ValueError(f"{where}: field {name or key!r} is missing (it must be {want})")
        return default
    if not ok(v):
        raise ValueError(f"{where}: field {name or key!r} must be {want}, got {json.dumps(v)[:40]}")
    return v


def _heads(where, C, H, Hkv, llama, names):
    """The width and head rules, in the file's own field names (width, heads, key/value heads)."""
    c, h, kv = names
    if C % H:
        raise ValueError(f"{where}: field {c!r} ({C}) is not divisible by field {h!r} ({H})")
    if H % Hkv:
        raise ValueError(f"{where}: field {h!r} ({H}) is not a multiple of field {kv!r} ({Hkv})")
    if llama and C // H % 2:
        raise ValueError(f"{where}: fields {c!r} / {h!r} give a head dim of {C // H}; RoPE needs an even one")


def _llama3_scaling(rope, where):
    """Llama 3's rope_scaling, each value checked (the middle band divides by high - low)."""
    out = {k: field(rope, k, where, "size" if k.startswith("original") else "positive", name=f"rope_scaling.{k}")
           for k in ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")}
    if out["high_freq_factor"] <= out["low_freq_factor"]:
        raise ValueError(f"{where}: field 'rope_scaling.high_freq_factor' must exceed low_freq_factor")
    return out


def our_config(m, where):
    """Our checkpoint's "model" object -> GPTConfig, every field checked; an absent optional field is GPTConfig's
    default (what an older checkpoint meant by leaving it out)."""
    if not isinstance(m, dict):
        raise ValueError(f"{where}: field 'model' must be an object, got {json.dumps(m)[:40]}")
    d = GPTConfig()
    c = {k: field(m, k, where, "size") for k in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd")}
    c["arch"] = m.get("arch") or d.arch
    if c["arch"] not in ARCHS:
        raise ValueError(f"{where}: field 'arch' must be one of {', '.join(ARCHS)}, got {json.dumps(c['arch'])[:40]}")
    for k, kind in (("dropout", "fraction"), ("bias", "bool"), ("n_kv_head", "count"), ("n_inner", "count"),
                    ("rope_theta", "positive"), ("norm_eps", "positive"), ("tie_embeddings", "bool")):
        c[k] = field(m, k, where, kind, getattr(d, k))
    scaling = field(m, "rope_scaling", where, "object", None)
    c["rope_scaling"] = None if scaling is None else _llama3_scaling(scaling, where)
    _heads(where, c["n_embd"], c["n_head"], c["n_kv_head"] or c["n_head"], c["arch"] == "llama",
           ("n_embd", "n_head", "n_kv_head"))
    if c["arch"] == "gpt2" and (c["n_kv_head"] not in (0, c["n_head"]) or not c["tie_embeddings"]):
        raise ValueError(f"{where}: the gpt2 layout has n_kv_head = n_head and tie_embeddings true (field 'arch')")
    return GPTConfig(**c)


def _gpt2_config(hf, cfg_path):
    C, H = field(hf, "n_embd", cfg_path, "size"), field(hf, "n_head", cfg_path, "size")
    P = field(hf, "n_positions", cfg_path, "size", None) or field(hf, "n_ctx", cfg_path, "size", None)
    if P is None:
        raise ValueError(f"{cfg_path}: field 'n_positions' is missing (it must be {KINDS['size'][1]})")
    _heads(cfg_path, C, H, H, False, ("n_embd", "n_head", "n_head"))
    config = GPTConfig(block_size=P, vocab_size=field(hf, "vocab_size", cfg_path, "size"),
                       n_layer=field(hf, "n_layer", cfg_path, "size"), n_head=H, n_embd=C, bias=True)
    # variants this GPT-2 layout does not implement would load without error and compute something else
    ok = dict(model_type=("gpt2",), activation_function=("gelu_new",), n_inner=(None, 4 * config.n_embd),
              layer_norm_epsilon=(1e-5,), scale_attn_by_inverse_layer_idx=(False,))
    unsupported = {k: hf[k] for k in ok if k in hf and hf[k] not in ok[k]}
    if unsupported:
        raise ValueError(f"{cfg_path}: unsupported variant {unsupported} (supported model_type: gpt2, llama)")
    return config


def _llama_config(hf, cfg_path):
    rope = {**field(hf, "rope_scaling", cfg_path, "object", {}),
            **field(hf, "rope_parameters", cfg_path, "object", {})}  # transformers 4 | 5 names
    kind = rope.get("rope_type", rope.get("type", "default"))
    C, H = field(hf, "hidden_size", cfg_path, "size"), field(hf, "num_attention_heads", cfg_path, "size")
    Hkv = field(hf, "num_key_value_heads", cfg_path, "size", H)
    _heads(cfg_path, C, H, Hkv, True, ("hidden_size", "num_attention_heads", "num_key_value_heads"))
    ok = dict(hidden_act="silu", attention_bias=False, mlp_bias=False, head_dim=C // H)
    bad = {k: hf[k] for k, v in ok.items() if hf.get(k, v) not in (v, None)}
    if kind not in ("default", "llama3"):
        bad["rope_type"] = kind
    if bad:
        raise ValueError(f"{cfg_path}: unsupported Llama variant {bad}")
    theta = field(rope, "rope_theta", cfg_path, "positive", None) or field(hf, "rope_theta", cfg_path, "positive",
                                                                           10000.0)
    return GPTConfig(arch="llama", block_size=field(hf, "max_position_embeddings", cfg_path, "size"),
                     vocab_size=field(hf, "vocab_size", cfg_path, "size"),
                     n_layer=field(hf, "num_hidden_layers", cfg_path, "size"), n_head=H, n_kv_head=Hkv, n_embd=C,
                     n_inner=field(hf, "intermediate_size", cfg_path, "size"), bias=False, rope_theta=float(theta),
                     rope_scaling=_llama3_scaling(rope, cfg_path) if kind == "llama3" else None,
                     norm_eps=field(hf, "rms_norm_eps", cfg_path, "positive", 1e-6),
                     tie_embeddings=field(hf, "tie_word_embeddings", cfg_path, "bool", False))


def _gpt2_state_dict(sd):
    sd = {(k if k.startswith(("transformer.", "lm_head.")) else "transformer." + k): v for k, v in sd.items()}
    sd = {k: v for k, v in sd.items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    sd.pop("lm_head.weight", None)  # tied to wte
    conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    return {k: (v.t() if k.endswith(conv1d) else v) for k, v in sd.items()}


LLAMA_KEYS = {"ln_1": ["input_layernorm"], "ln_2": ["post_attention_layernorm"], "attn.c_proj": ["self_attn.o_proj"],
              "attn.c_attn": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
              "mlp.c_fc": ["mlp.gate_proj", "mlp.up_proj"], "mlp.c_proj": ["mlp.down_proj"]}  # ours: [HF, ...]


def _llama_state_dict(sd, n_layer, src):
    """LlamaForCausalLM names -> ours; q, k, v stacked into c_attn and gate, up into c_fc (rows, in that order)."""
    sd = {k.removeprefix("model."): v for k, v in sd.items() if not k.endswith("rotary_emb.inv_freq")}

    def take(*names):
        if any(n not in sd for n in names):
            raise ValueError(f"{src}: missing keys {[n for n in names if n not in sd][:5]}")
        return torch.cat([sd.pop(n) for n in names])

    out = {"transformer.wte.weight": take("embed_tokens.weight"), "transformer.ln_f.weight": take("norm.weight")}
    if "lm_head.weight" in sd:
        out["lm_head.weight"] = sd.pop("lm_head.weight")
    for i in range(n_layer):
        for ours, theirs in LLAMA_KEYS.items():
            out[f"transformer.h.{i}.{ours}.weight"] = take(*(f"layers.{i}.{t}.weight" for t in theirs))
    return {**out, **sd}  # leftovers show up as unexpected keys


def _read_hf_weights(path):
    """model.safetensors, or every shard named in model.safetensors.index.json -> ({name: tensor}, source)."""
    files, src = _weight_files(path, FileNotFoundError)
    return {k: v for p in files for k, v in _read_safetensors(p).items()}, src


def _weight_files(d, missing=ValueError):
    """A Hugging Face directory's safetensors files: model.safetensors, or the shards its index names, each there
    -> (paths, the file to name in messages); `missing`: what is raised when it has neither file."""
    single, index = os.path.join(d, "model.safetensors"), os.path.join(d, "model.safetensors.index.json")
    if os.path.isfile(single):
        return [single], single
    if not os.path.isfile(index):
        raise missing(f"not a Hugging Face checkpoint directory: {single} (or {index}) is missing")
    try:
        shards = sorted(set(read_json(index)["weight_map"].values()))
        if not all(isinstance(f, str) for f in shards):
            raise TypeError("a shard name is not a string")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{index}: unreadable shard index ({type(e).__name__}: {e})") from None
    for shard in shards:
        if not os.path.isfile(os.path.join(d, shard)):
            raise ValueError(f"{index}: names the shard {shard}, which is missing")
    return [os.path.join(d, shard) for shard in shards], index


def _read_safetensors(p):
    try:
        return load_file(p)
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{p}: not a readable safetensors file ({e})") from None


# ----------------------------------------------------------------------------- checking a checkpoint before any work

FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")


def check_checkpoint(path, tok=None):
    """Everything about a checkpoint (ours or a Hugging Face GPT-2 / Llama directory) that can be known without
    loading a weight: config.json is an object whose every field the architecture needs has the right type and
    range; every tensor in the safetensors header(s) has the name and shape the config gives, and none is
    missing; and with `tok`, the tokenizer is the checkpoint's and its vocabulary fits (fit_tokenizer).
    -> (GPTConfig as stored, meta as load_model returns it). Raises ValueError naming the file and the field."""
    try:
        cfg_path = os.path.join(resolve_dir(path), "config.json")
    except FileNotFoundError as e:
        raise ValueError(str(e)) from None
    try:
        raw = read_json(cfg_path)
    except (OSError, ValueError) as e:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"{cfg_path}: unreadable ({e})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{cfg_path}: must hold a JSON object, got {type(raw).__name__}")
    d = os.path.dirname(cfg_path)
    if "model" in raw:  # ours
        config = our_config(raw["model"], cfg_path)
        meta = {k: v for k, v in raw.items() if k != "model"}
        src = os.path.join(d, "model.safetensors")
        if not os.path.isfile(src):
            raise ValueError(f"no checkpoint at {path} (expected config.json + model.safetensors)")
        _match(_header(src), *our_tensors(config), cfg_path, src, lambda n: n, ())
    else:
        llama = raw.get("model_type") == "llama"
        config = _llama_config(raw, cfg_path) if llama else _gpt2_config(raw, cfg_path)
        meta = hf_meta(path, config)
        tensors, src = _hf_headers(d)
        strip = (lambda n: n.removeprefix("model.")) if llama else (lambda n: n.removeprefix("transformer."))
        ignore = ("rotary_emb.inv_freq",) if llama else (".attn.bias", ".attn.masked_bias")
        _match(tensors, *hf_tensors(config), cfg_path, src, strip, ignore)
    if tok is not None:
        fit_tokenizer(path, config, meta, tok)
    return config, meta


def fit_tokenizer(path, config, meta, tok):
    """Refuse a tokenizer whose ids mean other strings to this checkpoint (check_tokenizer), or whose vocabulary
    is not the checkpoint's: ours must have exactly tok.n_vocab rows; a Hugging Face directory at most that many
    (the latent tokens are added after its vocabulary), and one that ships no tokenizer exactly the given
    tokenizer's vocabulary, with or without the latent tokens (else its ids would be read as another's)."""
    try:
        check_tokenizer(meta, tok)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    V, n, hf = config.vocab_size, tok.n_vocab, "init" in meta
    if not hf and V != n:
        raise ValueError(f"{path}: vocab_size {V} is not the {n} tokens of tokenizer {tok.name!r}")
    if hf and V > n:
        raise ValueError(f"{path}: vocab_size {V} is larger than the {n} tokens of tokenizer {tok.name!r}")
    base = n - len(LATENT_SPECIALS)
    if hf and meta.get("tokenizer") is None and V not in (base, n):
        raise ValueError(f"{path} ships no tokenizer (tokenizer.json or tokenizer.model) and its vocab_size {V} is "
                         f"not that of tokenizer {tok.name!r} ({base}, or {n} with the latent tokens): put the "
                         "checkpoint's tokenizer files beside its config.json, or pass the tokenizer it was trained "
                         "with")


def _header(p):
    """A safetensors file's tensors -> {name: (dtype, shape)}, from its header alone (no weight is read)."""
    try:
        with safe_open(p, "pt") as f:
            return {k: (s.get_dtype(), tuple(s.get_shape())) for k in f.keys() for s in (f.get_slice(k),)}
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{p}: not a readable safetensors file ({e})") from None


def _hf_headers(d):
    """A Hugging Face directory's tensors (model.safetensors, or the shards its index names) -> ({name: (dtype,
    shape)}, the file to name in messages)."""
    files, src = _weight_files(d)
    return {k: v for p in files for k, v in _header(p).items()}, src


def our_tensors(config):
    """The tensors our checkpoint of `config` holds, in GPT's names -> ({name: shape} outside the blocks, the
    optional ones, {name: shape} of block i under 'transformer.h.{i}.', n_layer). Padded vocabulary rows."""
    C, Vp, P, I = config.n_embd, config.padded_vocab, config.block_size, config.n_inner or 4 * config.n_embd
    kv, gpt2, b = config.kv_heads * (C // config.n_head), config.arch == "gpt2", config.bias
    nb = gpt2 and b  # LayerNorm(bias=bias); RMSNorm has a weight only
    fixed = {"transformer.wte.weight": (Vp, C), **({"transformer.wpe.weight": (P, C)} if gpt2 else {}),
             "transformer.ln_f.weight": (C,), **({"transformer.ln_f.bias": (C,)} if nb else {})}
    head = {"lm_head.weight": (Vp, C)}
    if not config.tie_embeddings:
        fixed.update(head)
    m = 1 if gpt2 else 2  # llama: gate and up fused
    block = {"ln_1.weight": (C,), "ln_2.weight": (C,), "attn.c_attn.weight": (C + 2 * kv, C),
             "attn.c_proj.weight": (C, C), "mlp.c_fc.weight": (m * I, C), "mlp.c_proj.weight": (C, I)}
    if nb:
        block.update({"ln_1.bias": (C,), "ln_2.bias": (C,)})
    if b:
        block.update({"attn.c_attn.bias": (C + 2 * kv,), "attn.c_proj.bias": (C,), "mlp.c_fc.bias": (m * I,),
                      "mlp.c_proj.bias": (C,)})
    return fixed, head if config.tie_embeddings else {}, "transformer.h.", block, config.n_layer


def hf_tensors(config):
    """The tensors a Hugging Face directory of `config` holds, in its names (without 'transformer.' / 'model.'),
    as our_tensors returns them. GPT-2's Conv1D weights are (in, out); the real vocabulary, unpadded."""
    C, V, P, I = config.n_embd, config.vocab_size, config.block_size, config.n_inner or 4 * config.n_embd
    head = {"lm_head.weight": (V, C)}
    if config.arch == "gpt2":
        fixed = {"wte.weight": (V, C), "wpe.weight": (P, C), "ln_f.weight": (C,), "ln_f.bias": (C,)}
        block = {"ln_1.weight": (C,), "ln_1.bias": (C,), "attn.c_attn.weight": (C, 3 * C), "attn.c_attn.bias": (3 * C,),
                 "attn.c_proj.weight": (C, C), "attn.c_proj.bias": (C,), "ln_2.weight": (C,), "ln_2.bias": (C,),
                 "mlp.c_fc.weight": (C, I), "mlp.c_fc.bias": (I,), "mlp.c_proj.weight": (I, C), "mlp.c_proj.bias": (C,)}
        return fixed, head, "h.", block, config.n_layer
    kv = config.kv_heads * (C // config.n_head)
    fixed = {"embed_tokens.weight": (V, C), "norm.weight": (C,), **({} if config.tie_embeddings else head)}
    block = {"input_layernorm.weight": (C,), "post_attention_layernorm.weight": (C,),
             "self_attn.q_proj.weight": (C, C), "self_attn.k_proj.weight": (kv, C), "self_attn.v_proj.weight": (kv, C),
             "self_attn.o_proj.weight": (C, C), "mlp.gate_proj.weight": (I, C), "mlp.up_proj.weight": (I, C),
             "mlp.down_proj.weight": (C, I)}
    return fixed, head if config.tie_embeddings else {}, "layers.", block, config.n_layer


def _match(tensors, fixed, optional, prefix, block, n_layer, where, src, strip, ignore):
    """Every tensor in `tensors` ({file name: (dtype, shape)}) is one the config gives, with its shape and a float
    dtype, and every required one is there. Block tensors are matched by pattern, so the work is the file's size,
    whatever n_layer the config claims."""
    seen = 0
    for name, (dtype, shape) in tensors.items():
        n = strip(name)
        if n.endswith(ignore):
            continue
        i, rest = n[len(prefix):].partition(".")[::2] if n.startswith(prefix) else ("", "")
        want = (block.get(rest) if i.isdigit() and i.isascii() and int(i) < n_layer
                else fixed.get(n, optional.get(n)))
        if want is None:
            raise ValueError(f"{src}: tensor {name} is not one the config in {where} gives"
                             + (f" (field n_layer: {n_layer})" if i.isdigit() else ""))
        if dtype not in FLOAT_DTYPES:
            raise ValueError(f"{src}: tensor {name} is {dtype}, not a float type")
        if shape != want:
            raise ValueError(f"{src}: tensor {name} has shape {list(shape)}, the config in {where} gives {list(want)}")
        seen += n not in optional
    if seen != len(fixed) + len(block) * n_layer:  # some required tensor is missing: name the first
        have = {strip(n) for n in tensors}
        names = itertools.chain(fixed, (f"{prefix}{i}.{r}" for i in range(n_layer) for r in block))
        missing = next(n for n in names if n not in have)
        pre = next((n[:len(n) - len(strip(n))] for n in tensors if strip(n) != n), "")  # as the file names them
        raise ValueError(f"{src}: no tensor {'' if missing.startswith('lm_head') else pre}{missing}, which the "
                         f"config in {where} needs")
