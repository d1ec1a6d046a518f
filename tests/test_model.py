"""Tests for model.py and checkpoint.py: Hugging Face GPT-2 / Llama equivalence, checkpoint files and their checks,
the KV cache, loss and vocabulary padding.

CPU, a few seconds. The HF side uses a small random `transformers.GPT2LMHeadModel` (test-only dependency),
saved with `save_pretrained(safe_serialization=True)`; our loader reads it with safetensors only.
Weights are randomised well away from GPT-2's init (biases and LayerNorms included) so a missed transpose,
a dropped bias or a wrong key cannot hide behind near-zero parameters.
"""
import json
import os
import re
import shutil

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import checkpoint
import kernels
from checkpoint import load_model
from conftest import check_bounds, run_py, tiny_gpt
from model import GPT, GPTConfig, KVCache

# two HF shapes: (vocab, n_positions, n_embd, n_layer, n_head); head dims 16 and 32, vocabs off the x64 grid
HF_CONFIGS = [(301, 48, 64, 2, 4), (517, 40, 96, 3, 3)]


def randomise_(module, seed):
    """Weights ~ N(0, 0.05), biases ~ N(0, 0.1), LayerNorm weights ~ 1 + N(0, 0.1), deterministic per seed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "ln_" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * noise)
            else:
                p.copy_((0.1 if name.endswith("bias") else 0.05) * noise)
    return module


def make_hf(path, vocab, n_pos, n_embd, n_layer, n_head, seed=0):
    """A random GPT2LMHeadModel saved as HF would: config.json + model.safetensors ('transformer.' keys)."""
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = GPT2Config(vocab_size=vocab, n_positions=n_pos, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                     bos_token_id=0, eos_token_id=0)
    torch.manual_seed(seed)
    hf = randomise_(GPT2LMHeadModel(cfg), seed).eval()
    hf.save_pretrained(path, safe_serialization=True)
    return hf


def to_hub_style(src, dst, n_layer, n_pos):
    """Re-save a save_pretrained directory with the hub's gpt2 key names: unprefixed 'h.0...', 'wte', 'wpe',
    'ln_f', no lm_head, plus the causal-mask buffers attn.bias (1, 1, P, P) and attn.masked_bias ()."""
    os.makedirs(dst)
    shutil.copy(os.path.join(src, "config.json"), dst)
    sd = load_file(os.path.join(src, "model.safetensors"))
    sd = {k.removeprefix("transformer."): v for k, v in sd.items() if not k.startswith("lm_head.")}
    for i in range(n_layer):
        sd[f"h.{i}.attn.bias"] = torch.tril(torch.ones(n_pos, n_pos)).view(1, 1, n_pos, n_pos)
        sd[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    assert not any(k.startswith("transformer.") for k in sd)
    save_file(sd, os.path.join(dst, "model.safetensors"))


def hf_logits(hf, idx):
    with torch.no_grad():
        return hf(idx).logits.float()


def ours_logits(model, idx):
    with torch.no_grad():
        return model.eval()(idx)


@pytest.fixture(scope="module", params=range(len(HF_CONFIGS)), ids=["e64-l2-h4", "e96-l3-h3"])
def hf_dir(request, tmp_path_factory):
    """(HF model, its save_pretrained dir, its hub-style copy, the shape tuple), built once per config."""
    shape = HF_CONFIGS[request.param]
    d = tmp_path_factory.mktemp("hf")
    hf = make_hf(str(d / "st"), *shape, seed=request.param)
    to_hub_style(str(d / "st"), str(d / "hub"), n_layer=shape[3], n_pos=shape[1])
    return hf, str(d / "st"), str(d / "hub"), shape


def small_model(seed=0, **kw):
    return randomise_(tiny_gpt(seed, **{"n_head": 4, "n_embd": 64, **kw}), seed).eval()


# ----------------------------------------------------------------------------- Hugging Face GPT-2

def test_from_pretrained_matches_hf(hf_dir):
    hf, st, _, (V, P, *_rest) = hf_dir
    idx = torch.randint(0, V, (3, P), generator=torch.Generator().manual_seed(1))
    ref = hf_logits(hf, idx)
    assert ref.abs().max() > 1.0  # the randomised weights give logits far from uniform: the check has teeth
    model = checkpoint.from_pretrained(st)
    assert model.config.vocab_size == V and model.config.block_size == P
    out = ours_logits(model, idx)
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() < 1e-4


def test_hub_key_names_load_same_logits(hf_dir):
    hf, st, hub, (V, P, *_rest) = hf_dir
    idx = torch.randint(0, V, (2, P), generator=torch.Generator().manual_seed(2))
    a, b = ours_logits(checkpoint.from_pretrained(st), idx), ours_logits(checkpoint.from_pretrained(hub), idx)
    assert torch.equal(a, b)
    assert (b - hf_logits(hf, idx)).abs().max().item() < 1e-4


def test_from_pretrained_block_size_crop(hf_dir):
    hf, st, _, (V, P, *_rest) = hf_dir
    model = checkpoint.from_pretrained(st, block_size=P // 2)
    assert model.transformer.wpe.weight.shape[0] == P // 2
    idx = torch.randint(0, V, (2, P // 2), generator=torch.Generator().manual_seed(3))
    assert (ours_logits(model, idx) - hf_logits(hf, idx)).abs().max().item() < 1e-4
    with pytest.raises(ValueError, match="exceeds block_size"):
        model(torch.zeros(1, P // 2 + 1, dtype=torch.long))


def test_from_pretrained_missing_tensor_is_clear(hf_dir, tmp_path):
    _, st, _, _ = hf_dir
    shutil.copy(os.path.join(st, "config.json"), tmp_path)
    sd = load_file(os.path.join(st, "model.safetensors"))
    del sd["transformer.h.0.mlp.c_fc.bias"]
    save_file(sd, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="h.0.mlp.c_fc.bias"):
        checkpoint.from_pretrained(str(tmp_path))


def test_vocab_growth_gpt2_style(tmp_path):
    """GPT-2's 50257 tokens + the 4 latent tokens = 50261, inside the same padded 50304 rows."""
    E = 32
    hf = make_hf(str(tmp_path), 50257, 16, E, 1, 2, seed=5)
    model = checkpoint.from_pretrained(str(tmp_path), vocab_size=50261)
    assert model.config.vocab_size == 50261 and model.config.padded_vocab == 50304
    wte = model.transformer.wte.weight.detach()
    assert wte.shape == (50304, E) and model.lm_head.weight is model.transformer.wte.weight
    assert torch.equal(wte[:50257], hf.transformer.wte.weight.detach())  # old rows kept bit-exactly
    new, std = wte[50257:], E ** -0.5  # the 4 latent rows and the padding: N(0, n_embd^-1/2), clamped at 3 sigma
    assert new.abs().max().item() <= 3 * std + 1e-7
    assert 0.85 * std < new.std().item() < 1.15 * std
    assert new.abs().max().item() > 2 * std  # not a constant or a tiny-std init
    idx = torch.randint(0, 50257, (2, 16), generator=torch.Generator().manual_seed(4))
    out, ref = ours_logits(model, idx), hf_logits(hf, idx)
    assert out.shape == (2, 16, 50261)
    assert (out[..., :50257] - ref).abs().max().item() < 1e-4  # old tokens' logits unchanged by the growth


def test_load_model_on_hf_dir(hf_dir):
    hf, st, hub, (V, P, *_rest) = hf_dir
    idx = torch.randint(0, V, (2, P), generator=torch.Generator().manual_seed(6))
    for d in (st, hub):
        model, meta = load_model(d, vocab_size=V + 4)
        assert meta["tokenizer"] == "gpt2" and model.config.vocab_size == V + 4
        assert (ours_logits(model, idx)[..., :V] - hf_logits(hf, idx)).abs().max().item() < 1e-4


# ----------------------------------------------------------------------------- our checkpoints

def test_save_load_round_trip_bit_exact(tmp_path):
    model = small_model(seed=7, vocab_size=250).resize_vocab(261)
    model.crop_block_size(48)
    meta = {"tokenizer": "bytes", "step": 12, "train": {"lr": 3e-4, "layout": "random", "seen": [1, 2]}}
    path = str(tmp_path / "ckpt")
    checkpoint.save(model, path, meta)
    loaded, meta2 = checkpoint.load(path)
    assert meta2 == meta
    assert loaded.config == model.config
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys()
    for k in sd:
        assert sd[k].dtype == sd2[k].dtype and torch.equal(sd[k], sd2[k]), k
    assert loaded.lm_head.weight is loaded.transformer.wte.weight  # tying survives the round trip
    idx = torch.randint(0, 261, (2, 48), generator=torch.Generator().manual_seed(8))
    assert torch.equal(ours_logits(model, idx), ours_logits(loaded, idx))
    checkpoint.save(model, path, {"tokenizer": "bytes", "step": 13})  # overwriting an existing checkpoint
    assert checkpoint.load(path)[1]["step"] == 13
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]  # no tmp or .old left behind
    via_load_model, meta3 = load_model(path)
    assert meta3["step"] == 13 and torch.equal(ours_logits(via_load_model, idx), ours_logits(model, idx))


def test_meta_cannot_clobber_model_config(tmp_path):
    with pytest.raises(ValueError, match="model"):
        checkpoint.save(small_model(), str(tmp_path / "c"), {"model": "mine"})
    assert not os.path.exists(tmp_path / "c")


@pytest.fixture
def saved(tmp_path):
    path = str(tmp_path / "ckpt")
    checkpoint.save(small_model(seed=9), path, {"tokenizer": "bytes"})
    return path


def corrupt(path, name, data):
    with open(os.path.join(path, name), "wb") as f:
        f.write(data)


def test_truncated_or_corrupt_checkpoint_is_clear(saved):
    st = os.path.join(saved, "model.safetensors")
    good_st = open(st, "rb").read()
    good_cfg = open(os.path.join(saved, "config.json"), "rb").read()
    for data in (good_st[: len(good_st) // 2], good_st[:5], b"", b"\x00" * 64):
        corrupt(saved, "model.safetensors", data)
        with pytest.raises(ValueError, match="model.safetensors"):
            checkpoint.load(saved)
        with pytest.raises(ValueError, match="model.safetensors"):
            load_model(saved)
    corrupt(saved, "model.safetensors", good_st)
    for data in (good_cfg[: len(good_cfg) // 2], b"", b"[1, 2]", b'{"tokenizer": "bytes"}',
                 json.dumps({"model": {"n_embd": 96, "n_head": 4, "n_layer": 2, "block_size": 64,
                                       "vocab_size": 261}}).encode()):
        corrupt(saved, "config.json", data)
        with pytest.raises(ValueError, match=os.path.basename(saved)):
            checkpoint.load(saved)
    corrupt(saved, "config.json", good_cfg)
    checkpoint.load(saved)  # restored files load again


def test_checkpoint_missing_tensor_is_clear(saved):
    sd = load_file(os.path.join(saved, "model.safetensors"))
    for key in ("transformer.wte.weight", "transformer.h.1.ln_2.bias"):
        save_file({k: v for k, v in sd.items() if k != key}, os.path.join(saved, "model.safetensors"))
        with pytest.raises(ValueError, match=key.split(".")[-2]):
            checkpoint.load(saved)


def test_missing_checkpoint_is_file_not_found(tmp_path, saved):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        checkpoint.load(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError):
        load_model(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="config.json"):
        checkpoint.from_pretrained(str(tmp_path / "nowhere"))
    os.remove(os.path.join(saved, "config.json"))
    with pytest.raises(FileNotFoundError):
        checkpoint.load(saved)


def test_hf_corrupt_config_is_clear(hf_dir, tmp_path):
    _, st, _, _ = hf_dir
    shutil.copy(os.path.join(st, "model.safetensors"), tmp_path)
    for data in (b'{"n_embd": 6', b'{"model_type": "gpt2", "n_embd": 64}'):
        corrupt(str(tmp_path), "config.json", data)
        with pytest.raises(ValueError, match="config.json"):
            checkpoint.from_pretrained(str(tmp_path))
    cfg = json.load(open(os.path.join(st, "config.json")))
    corrupt(str(tmp_path), "config.json", json.dumps(cfg).encode())
    corrupt(str(tmp_path), "model.safetensors", open(os.path.join(st, "model.safetensors"), "rb").read()[:100])
    with pytest.raises(ValueError, match="model.safetensors"):
        checkpoint.from_pretrained(str(tmp_path))


def test_interrupted_save_still_loads(tmp_path):
    """The states a kill can leave behind in `atomic_dir`, each must load the last complete checkpoint."""
    old, new = small_model(seed=10), small_model(seed=11)
    idx = torch.randint(0, 261, (1, 16), generator=torch.Generator().manual_seed(12))
    path = str(tmp_path / "ckpt")
    checkpoint.save(old, path, {"step": 1})
    # killed while writing: a stray, half-written tmp dir next to the intact checkpoint
    os.makedirs(path + ".tmp99999")
    corrupt(path + ".tmp99999", "config.json", b'{"model": {')
    m, meta = checkpoint.load(path)
    assert meta["step"] == 1 and torch.equal(ours_logits(m, idx), ours_logits(old, idx))
    # killed between the two renames: only path.old (+ the finished tmp) exist
    checkpoint.save(new, path + ".tmp99999", {"step": 2})
    os.rename(path, path + ".old")
    m, meta = checkpoint.load(path)
    assert meta["step"] == 1 and torch.equal(ours_logits(m, idx), ours_logits(old, idx))
    assert load_model(path)[1]["step"] == 1
    # killed after the second rename, before removing .old: the new checkpoint wins
    os.rename(path + ".tmp99999", path)
    m, meta = checkpoint.load(path)
    assert meta["step"] == 2 and torch.equal(ours_logits(m, idx), ours_logits(new, idx))
    # the next save goes through and cleans the leftover .old
    checkpoint.save(old, path, {"step": 3})
    assert checkpoint.load(path)[1]["step"] == 3 and not os.path.exists(path + ".old")


# ----------------------------------------------------------------------------- KV cache

def last_logits(model, seq):
    """Full (uncached) forward of one sequence -> logits (V,) at its last position."""
    with torch.no_grad():
        return model(torch.tensor([seq]))[0, -1]


def prefill(model, cache, rows, prompts, pad_gen):
    """Right-pad ragged prompts with random junk (it must be ignored) and prefill them into `rows`."""
    T = max(map(len, prompts))
    idx = torch.randint(0, model.config.vocab_size, (len(prompts), T), generator=pad_gen)
    for i, p in enumerate(prompts):
        idx[i, :len(p)] = torch.tensor(p)
    with torch.no_grad():
        return model(idx, cache=cache, rows=torch.tensor(rows), lengths=torch.tensor([len(p) for p in prompts]))


def test_kv_cache_prefill_decode_refill_equals_full_forward():
    model = small_model(seed=13)
    V, g = model.config.vocab_size, torch.Generator().manual_seed(14)
    rand = lambda n: torch.randint(0, V, (n,), generator=g).tolist()  # noqa: E731
    cache = KVCache(model.config, batch_size=4, max_len=40, device="cpu")
    seqs = [None] * 4
    # two prefills into chosen rows, out of order, with ragged lengths (1 .. 11 tokens)
    for rows, lens in (([2, 0], [7, 1]), ([3, 1], [11, 4])):
        prompts = [rand(n) for n in lens]
        out = prefill(model, cache, rows, prompts, g)
        assert out.shape == (len(rows), V) and out.dtype == torch.float32
        for r, p, o in zip(rows, prompts, out):
            seqs[r] = p
            assert (o - last_logits(model, p)).abs().max().item() < 1e-5
    assert cache.seqlens.tolist() == [1, 4, 7, 11]

    def decode(steps):
        for _ in range(steps):
            nxt = rand(4)
            with torch.no_grad():
                out = model(torch.tensor(nxt)[:, None], cache=cache)
            for r in range(4):
                seqs[r] = seqs[r] + [nxt[r]]
                assert (out[r] - last_logits(model, seqs[r])).abs().max().item() < 1e-5, (r, len(seqs[r]))
            assert cache.seqlens.tolist() == [len(s) for s in seqs]

    decode(5)
    # refill rows 1 and 2 with new prompts (shorter and longer than before) while rows 0 and 3 keep going
    prompts = [rand(2), rand(15)]
    out = prefill(model, cache, [1, 2], prompts, g)
    for r, p, o in zip([1, 2], prompts, out):
        seqs[r] = p
        assert (o - last_logits(model, p)).abs().max().item() < 1e-5
    decode(6)
    assert max(map(len, seqs)) == 22


def test_kv_cache_rejects_bad_shapes():
    model = small_model()
    with pytest.raises(ValueError, match="block_size"):
        KVCache(model.config, batch_size=2, max_len=65, device="cpu")
    cache = KVCache(model.config, batch_size=2, max_len=16, device="cpu")
    with pytest.raises(ValueError, match="one token per cache row"):
        model(torch.zeros(3, 1, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="one token per cache row"):
        model(torch.zeros(2, 2, dtype=torch.long), cache=cache)


# ----------------------------------------------------------------------------- loss and vocabulary

def test_loss_ignore_index_and_reductions():
    model = small_model(seed=15)
    g = torch.Generator().manual_seed(16)
    idx = torch.randint(0, 261, (2, 12), generator=g)
    targets = torch.randint(0, 261, (2, 12), generator=g)
    targets[0, :5] = -1
    logits, loss = model(idx, targets)
    ref = F.cross_entropy(logits.reshape(-1, 261), targets.reshape(-1), ignore_index=-1)
    assert loss.dtype == torch.float32 and torch.allclose(loss, ref, atol=1e-6)
    _, loss_sum = model(idx, targets, loss_reduction="sum")
    assert torch.allclose(loss_sum, ref * (targets != -1).sum(), rtol=1e-5)
    # a batch with no targets at all: exactly 0, finite gradients (nanochat #590 was a NaN here)
    model.train()
    for reduction in ("mean", "sum"):
        model.zero_grad()
        _, loss = model(idx, torch.full_like(targets, -1), loss_reduction=reduction)
        assert loss.item() == 0.0
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("vocab,padded", [(261, 320), (64, 64), (65, 128), (50257, 50304), (50261, 50304)])
def test_vocab_padding(vocab, padded):
    cfg = GPTConfig(vocab_size=vocab, n_layer=1, n_head=1, n_embd=8, block_size=8)
    assert cfg.padded_vocab == padded
    if vocab > 1000:
        return
    model = small_model(vocab_size=vocab, n_layer=1, n_head=1, n_embd=8, block_size=8)
    assert model.transformer.wte.weight.shape == (padded, 8)
    idx = torch.randint(0, vocab, (2, 8))
    before = ours_logits(model, idx)
    assert before.shape == (2, 8, vocab)
    with torch.no_grad():  # the padding rows are never scored: making them huge changes nothing
        model.transformer.wte.weight[vocab:] = 1e4
    assert torch.equal(ours_logits(model, idx), before)


def test_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=64, n_head=3)
    with pytest.raises(ValueError, match="positive"):
        GPTConfig(vocab_size=0)
    with pytest.raises(ValueError, match="shrink"):
        small_model().resize_vocab(100)


# ----------------------------------------------------------------------------- Hugging Face Llama

LLAMA3_ROPE = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                   original_max_position_embeddings=16)
# (id, num_key_value_heads, tied, rope_scaling): MHA untied, GQA tied, MQA untied with Llama 3 rope scaling
LLAMA_CONFIGS = [("mha-untied", 4, False, None), ("gqa-tied", 2, True, None), ("mqa-llama3", 1, False, LLAMA3_ROPE)]


def make_llama(path, kv_heads, tied, rope_scaling, vocab=301, seed=0, **save_kw):
    """A random LlamaForCausalLM (head dim 16, positions up to 64, rope_theta 500 so all frequencies turn within
    the window) saved with save_pretrained; weights N(0, 0.1), RMSNorm weights 1 + N(0, 0.1)."""
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=kv_heads, max_position_embeddings=64, rope_theta=500.0,
                      rope_scaling=rope_scaling, tie_word_embeddings=tied, rms_norm_eps=1e-5, bos_token_id=1,
                      eos_token_id=2, pad_token_id=0)
    torch.manual_seed(seed)
    hf = LlamaForCausalLM(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.1 * noise if name.endswith("norm.weight") else 0.1 * noise)
    hf.save_pretrained(path, **save_kw)
    return hf


@pytest.fixture(scope="module", params=LLAMA_CONFIGS, ids=[c[0] for c in LLAMA_CONFIGS])
def llama_dir(request, tmp_path_factory):
    _, kv, tied, rope = request.param
    d = str(tmp_path_factory.mktemp("llama") / "hf")
    return make_llama(d, kv, tied, rope, seed=kv), d


def test_llama_matches_hf(llama_dir):
    hf, d = llama_dir
    idx = torch.randint(0, 301, (3, 64), generator=torch.Generator().manual_seed(1))
    ref = hf_logits(hf, idx)
    assert ref.abs().max() > 1.0
    model = checkpoint.from_pretrained(d)
    c = model.config
    assert (c.arch, c.n_kv_head, c.tie_embeddings) == ("llama", hf.config.num_key_value_heads, hf.config.tie_word_embeddings)
    assert (model.lm_head.weight is model.transformer.wte.weight) == c.tie_embeddings
    assert (ours_logits(model, idx) - ref).abs().max().item() < 1e-4


def test_llama3_rope_scaling_is_applied():
    """Llama 3's rope_scaling changes the frequencies, hence the logits: the equivalence test can see it."""
    model = small_model(seed=21, arch="llama", rope_theta=500.0, rope_scaling=LLAMA3_ROPE)
    plain = small_model(seed=21, arch="llama", rope_theta=500.0)
    assert not torch.equal(model.inv_freq, plain.inv_freq)
    idx = torch.randint(0, 261, (1, 64), generator=torch.Generator().manual_seed(2))
    assert (ours_logits(model, idx) - ours_logits(plain, idx)).abs().max().item() > 1e-2


def test_llama_vocab_growth_and_round_trip(llama_dir, tmp_path):
    """+4 latent tokens: old logits unchanged (tied or untied head); our checkpoint reloads bit-exactly."""
    hf, d = llama_dir
    model, meta = load_model(d, vocab_size=305)
    assert meta["tokenizer"] is None and meta["init"] == d  # this directory ships no tokenizer
    assert model.config.vocab_size == 305 and model.lm_head.weight.shape[0] == model.config.padded_vocab
    idx = torch.randint(0, 301, (2, 32), generator=torch.Generator().manual_seed(3))
    out = ours_logits(model, idx)
    assert out.shape == (2, 32, 305) and (out[..., :301] - hf_logits(hf, idx)).abs().max().item() < 1e-4
    checkpoint.save(model, str(tmp_path / "ckpt"), {"tokenizer": "x@0"})
    loaded, meta2 = load_model(str(tmp_path / "ckpt"))
    assert meta2 == {"tokenizer": "x@0"} and loaded.config == model.config
    assert (loaded.lm_head.weight is loaded.transformer.wte.weight) == model.config.tie_embeddings
    assert torch.equal(ours_logits(loaded, idx), out)


def test_llama_greedy_generate_matches_hf(llama_dir):
    """sample.generate (static KV cache, continuous batching: 5 ragged prompts through 2 rows, so rows are refilled
    at other positions while the rest decode) gives transformers' greedy tokens."""
    from sample import generate
    hf, d = llama_dir
    hf.generation_config.eos_token_id = None
    model = checkpoint.from_pretrained(d).eval()
    g = torch.Generator().manual_seed(4)
    prompts = [torch.randint(0, 301, (n,), generator=g).tolist() for n in (1, 9, 4, 17, 6)]
    ours = generate(model, prompts, 12, temperature=0.0, batch_size=2)
    for p, o in zip(prompts, ours):
        with torch.no_grad():
            ref = hf.generate(torch.tensor([p]), max_new_tokens=12, do_sample=False, pad_token_id=0)[0, len(p):]
        assert o["tokens"] == ref.tolist()


def test_llama_sharded_checkpoint(llama_dir, tmp_path):
    hf, d = llama_dir
    make_llama(str(tmp_path / "sharded"), hf.config.num_key_value_heads, hf.config.tie_word_embeddings,
               hf.config.rope_parameters if hf.config.rope_parameters.get("rope_type") == "llama3" else None,
               seed=hf.config.num_key_value_heads, max_shard_size="40KB")
    files = sorted(os.listdir(tmp_path / "sharded"))
    assert "model.safetensors.index.json" in files and "model.safetensors" not in files
    assert sum(f.startswith("model-0000") for f in files) >= 2
    idx = torch.randint(0, 301, (2, 40), generator=torch.Generator().manual_seed(5))
    assert torch.equal(ours_logits(checkpoint.from_pretrained(str(tmp_path / "sharded")), idx),
                       ours_logits(checkpoint.from_pretrained(d), idx))
    os.remove(tmp_path / "sharded" / [f for f in files if f.startswith("model-0000")][-1])
    with pytest.raises(ValueError, match="safetensors"):
        checkpoint.from_pretrained(str(tmp_path / "sharded"))


def test_llama_unsupported_variants_are_refused(llama_dir, tmp_path):
    _, d = llama_dir
    shutil.copy(os.path.join(d, "model.safetensors"), tmp_path)
    cfg = json.load(open(os.path.join(d, "config.json")))
    for change, word in ((dict(hidden_act="gelu"), "hidden_act"), (dict(attention_bias=True), "attention_bias"),
                         (dict(rope_parameters={"rope_type": "yarn", "rope_theta": 1e4}), "yarn"),
                         (dict(head_dim=8), "head_dim")):
        corrupt(str(tmp_path), "config.json", json.dumps({**cfg, **change}).encode())
        with pytest.raises(ValueError, match=word):
            checkpoint.from_pretrained(str(tmp_path))
    corrupt(str(tmp_path), "config.json", json.dumps({**cfg, "num_hidden_layers": 3}).encode())
    with pytest.raises(ValueError, match="layers.2"):
        checkpoint.from_pretrained(str(tmp_path))


def test_llama_kv_cache_and_triton_path(monkeypatch):
    """GQA + RoPE through the cache: ragged prefill into chosen rows, then decode where every row sits at its own
    position, equal to full forwards; and the Triton kernels (interpreter) give the torch path's logits."""
    model = small_model(seed=17, arch="llama", n_kv_head=2, n_inner=80, bias=False, tie_embeddings=False)
    rows = [2, 0, 1]  # prompt i goes to cache row rows[i]

    def run(choice):
        monkeypatch.setattr(kernels, "CHOICE", choice)
        g = torch.Generator().manual_seed(18)
        seqs = [torch.randint(0, 261, (n,), generator=g).tolist() for n in (3, 11, 6)]
        cache = KVCache(model.config, 3, 24, "cpu")
        outs = [prefill(model, cache, rows, seqs, g)]
        for _ in range(4):
            nxt = torch.randint(0, 261, (3,), generator=g)  # the next token of each cache row
            with torch.no_grad():
                outs.append(model(nxt[:, None], cache=cache))
            for i, r in enumerate(rows):
                seqs[i].append(nxt[r].item())
        return outs, seqs

    outs, seqs = run("torch")
    for i, r in enumerate(rows):
        assert (outs[-1][r] - last_logits(model, seqs[i])).abs().max().item() < 1e-5
    for a, b in zip(run("triton")[0], outs):
        assert (a - b).abs().max().item() < 1e-4


def test_llama_trains():
    """One AdamW step through the llama layout lowers the loss; every parameter gets a finite gradient."""
    model = small_model(seed=19, arch="llama", n_kv_head=1, bias=False).train()
    idx = torch.randint(0, 261, (4, 32), generator=torch.Generator().manual_seed(20))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        _, loss = model(idx[:, :-1], idx[:, 1:])
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.slow
def test_em_runs_from_a_tiny_llama_dir(tmp_path):
    """The real-model path on a Llama directory: a tiny random LlamaForCausalLM (GQA, untied, a padded vocabulary)
    with a byte-level BPE tokenizer.json (SmolLM2 style) runs `em.py --init DIR --tokenizer DIR --corpus ...
    --teacher-latents ... --val ... --iters 1` to a report; the latent tokens sit after the model's vocabulary."""
    from test_tokenizer import build_hf_tokenizer
    from data.tokenizer import get_tokenizer
    d = str(tmp_path / "SmolLM2-tiny")
    n = build_hf_tokenizer(d, "smollm2").get_vocab_size()
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=n + 3, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                 tie_word_embeddings=False)).save_pretrained(d)
    tok = get_tokenizer(d)
    assert tok.sol == n + 3 and tok.bos != tok.eos
    text = ["The cat sat on the mat. ", "It was warm and quiet. ", "Then the dog came in, 3 times. "]
    write = lambda name, docs: (tmp_path / name).write_text("".join(json.dumps(x) + "\n" for x in docs))  # noqa
    write("corpus.jsonl", [{"id": f"c{i}", "chunks": [{"suffix": t, "latent": "why: " + t[:8]} for t in text]}
                           for i in range(8)])
    write("teacher.jsonl", [{"chunks": [{"suffix": f"{i}: {t}", "latent": "so " + t[:6]} for t in text[::-1]]}
                            for i in range(4)])
    write("val.jsonl", [{"text": "".join(text[i:] + text[:i])} for i in range(3)])
    out = tmp_path / "run"
    r = run_py(["em.py", "--init", d, "--tokenizer", d, "--corpus", str(tmp_path / "corpus.jsonl"),
                "--teacher-latents", str(tmp_path / "teacher.jsonl"), "--val", str(tmp_path / "val.jsonl"),
                "--iters", "1", "--k", "2", "--out", str(out), "--warm-steps", "3", "--m-steps", "3",
                "--block-size", "96", "--batch-size", "4", "--max-latent", "12", "--oracle"],
               env={"OMP_NUM_THREADS": "1"},
               timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert {m["name"] for m in metrics} >= {"warm start", "BoLT iter 1", "oracle (the corpus' latents)"}
    check_bounds(out, metrics)
    assert "report" in (out / "report.md").read_text().lower()
    model, meta = load_model(str(out / "iter1" / "model" / "ckpt"))
    assert model.config.arch == "llama" and model.config.vocab_size == n + 7 and meta["tokenizer"] == tok.name


# ----------------------------------------------------------------------------- checking a checkpoint before any work

CONFIGS = [GPTConfig(), GPTConfig(bias=False, n_inner=80), GPTConfig(arch="llama", n_kv_head=2, bias=False,
                                                                    tie_embeddings=False, n_inner=96),
           GPTConfig(arch="llama", n_kv_head=1, vocab_size=300)]


@pytest.mark.parametrize("config", CONFIGS, ids=["gpt2", "gpt2-nobias", "llama-gqa-untied", "llama-mqa"])
def test_tensor_tables_and_param_count_match_the_module(config):
    """checkpoint.our_tensors (what check_checkpoint expects of our files) and param_count are GPT's own state dict."""
    from memory import param_count
    from checkpoint import our_tensors
    fixed, optional, prefix, block, n_layer = our_tensors(config)
    table = {**fixed, **optional, **{f"{prefix}{i}.{k}": v for i in range(n_layer) for k, v in block.items()}}
    model = GPT(config)
    assert table == {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert param_count(config) == sum(p.numel() for p in model.parameters())


def test_check_checkpoint_passes_real_directories_without_reading_weights(hf_dir, llama_dir, saved, monkeypatch):
    """HF GPT-2 (save_pretrained and hub names), HF Llama and our checkpoint pass; the config it returns is the
    one the loader builds; no weight is read (the loaders' readers are broken for the check)."""
    from checkpoint import check_checkpoint
    _, st, hub, (V, P, C, L, H) = hf_dir
    want = {d: load_model(d)[0].config for d in (st, hub, llama_dir[1], saved)}

    def no_weights(*a, **k):
        raise AssertionError("a weight was read")
    monkeypatch.setattr(checkpoint, "load_file", no_weights)
    for d, config in want.items():
        got, meta = check_checkpoint(d)
        assert got == config, d
    assert check_checkpoint(st)[1] == {"tokenizer": "gpt2", "init": st}


def hf_copy(src, dst, change=None, drop=(), add=None):
    """A copy of HF directory `src` with config.json fields changed and tensors dropped or added."""
    shutil.copytree(src, dst)
    cfg = json.load(open(os.path.join(src, "config.json")))
    corrupt(dst, "config.json", json.dumps({**cfg, **(change or {})} if isinstance(change, dict) or change is None
                                           else change).encode())
    if drop or add:
        sd = load_file(os.path.join(src, "model.safetensors"))
        save_file({**{k: v for k, v in sd.items() if k not in drop}, **(add or {})},
                  os.path.join(dst, "model.safetensors"))
    return dst


def test_check_checkpoint_refusals_name_the_file_and_field(hf_dir, tmp_path):
    """Every malformed HF GPT-2 directory of the issue is refused with ValueError naming the file and the field
    (or the tensor), never a TypeError, a KeyError or GPTConfig's repr."""
    from checkpoint import check_checkpoint
    _, st, _, (V, P, C, L, H) = hf_dir
    cases = [(5, "config.json: must hold a JSON object, got int"), ("x", "must hold a JSON object, got str"),
             ([1], "got list"), ({"n_layer": None}, "field 'n_layer' is missing"),
             ({"n_head": 0}, "field 'n_head' must be an integer >= 1, got 0"),
             ({"n_embd": True}, "field 'n_embd' must be an integer >= 1, got true"),
             ({"vocab_size": 1.5}, "field 'vocab_size'"), ({"n_positions": None, "n_ctx": None}, "'n_positions'"),
             ({"n_head": 5}, f"field 'n_embd' ({C}) is not divisible by field 'n_head' (5)"),
             ({"n_embd": 2 * C, "n_head": H}, "has shape"), ({"vocab_size": V + 1}, "wte.weight has shape"),
             ({"n_layer": L + 1}, f"no tensor transformer.h.{L}.ln_1.weight"), ({"n_layer": L - 1}, f"h.{L - 1}."),
             ({"n_positions": P * 2}, "wpe.weight has shape")]
    for i, (change, msg) in enumerate(cases):
        d = hf_copy(st, str(tmp_path / f"c{i}"), change)
        with pytest.raises(ValueError, match=re.escape(msg)) as e:
            check_checkpoint(d)
        assert "config.json" in str(e.value) or "model.safetensors" in str(e.value)
        assert "GPTConfig(" not in str(e.value)
    name = "transformer.h.0.mlp.c_fc.bias"
    with pytest.raises(ValueError, match=f"model.safetensors: no tensor transformer.h.0.mlp.c_fc.bias"):
        check_checkpoint(hf_copy(st, str(tmp_path / "drop"), drop=(name,)))
    with pytest.raises(ValueError, match="tensor transformer.h.0.extra is not one the config"):
        check_checkpoint(hf_copy(st, str(tmp_path / "add"), add={"transformer.h.0.extra": torch.zeros(2)}))
    with pytest.raises(ValueError, match="tensor transformer.ln_f.bias is I64, not a float type"):
        check_checkpoint(hf_copy(st, str(tmp_path / "int"),
                                 add={"transformer.ln_f.bias": torch.zeros(C, dtype=torch.int64)}))


def test_check_checkpoint_refuses_bad_llama_and_ours(llama_dir, saved, tmp_path):
    from checkpoint import check_checkpoint
    _, d = llama_dir
    for i, (change, msg) in enumerate([({"num_key_value_heads": 3}, "field 'num_attention_heads' (4) is not a "
                                                                    "multiple of field 'num_key_value_heads' (3)"),
                                       ({"hidden_size": 64, "num_attention_heads": 64}, "RoPE needs an even one"),
                                       ({"intermediate_size": 97}, "_proj.weight has shape"),
                                       ({"rms_norm_eps": -1}, "field 'rms_norm_eps' must be a finite number > 0"),
                                       ({"rope_scaling": "x"}, "field 'rope_scaling' must be an object"),
                                       ({"tie_word_embeddings": "no"}, "field 'tie_word_embeddings'")]):
        with pytest.raises(ValueError, match=re.escape(msg)):
            check_checkpoint(hf_copy(d, str(tmp_path / f"l{i}"), change))
    cfg = json.load(open(os.path.join(saved, "config.json")))
    for i, (model_cfg, msg) in enumerate([(5, "field 'model' must be an object"),
                                         ({**cfg["model"], "n_head": -1}, "field 'n_head' must be an integer >= 1"),
                                         ({**cfg["model"], "arch": "rnn"}, "field 'arch' must be one of gpt2, llama"),
                                         ({**cfg["model"], "dropout": 2}, "field 'dropout' must be a number in [0, 1)"),
                                         ({**cfg["model"], "n_embd": 32, "n_head": 4}, "has shape")]):
        corrupt(saved, "config.json", json.dumps({**cfg, "model": model_cfg}).encode())
        with pytest.raises(ValueError, match=re.escape(msg)):
            check_checkpoint(saved)


def test_check_checkpoint_tokenizer_must_fit(llama_dir, saved, tmp_path):
    """With a tokenizer: ours needs exactly its vocabulary; a Llama directory without a tokenizer is refused
    unless its vocabulary is the given tokenizer's (257 or 261 for bytes), and a gpt2 directory is gpt2's."""
    from data.tokenizer import get_tokenizer
    from checkpoint import check_checkpoint
    tok = get_tokenizer("bytes")
    assert check_checkpoint(saved, tok)[0].vocab_size == 261
    _, d = llama_dir  # vocabulary 301, no tokenizer files
    with pytest.raises(ValueError, match="vocab_size 301 is larger than the 261 tokens of tokenizer 'bytes'"):
        check_checkpoint(d, tok)
    for V, ok in ((200, False), (257, True), (261, True)):
        small = make_llama(str(tmp_path / f"v{V}"), 2, True, None, vocab=V)
        if ok:
            assert check_checkpoint(str(tmp_path / f"v{V}"), tok)[0].vocab_size == small.config.vocab_size
        else:
            with pytest.raises(ValueError, match="ships no tokenizer"):
                check_checkpoint(str(tmp_path / f"v{V}"), tok)
    cfg = json.load(open(os.path.join(saved, "config.json")))
    corrupt(saved, "config.json", json.dumps({**cfg, "tokenizer": "gpt2"}).encode())
    with pytest.raises(ValueError, match="trained with tokenizer 'gpt2'"):
        check_checkpoint(saved, tok)
