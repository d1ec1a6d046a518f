"""train.py on CPU, tiny models (2 layers, 32-64 wide, 32-token windows), seconds per test.

Covers (the training rows: tests/test_loader.py): overfitting,
torchrun DDP == one process, stop + resume == straight run (weights and data order), checkpoints that load with
checkpoint.load and survive an interrupted save, a caller-owned process group, HF GPT-2 init with the latent
tokens added, and one-line errors for bad flags.
"""
import json
import os
from dataclasses import replace

import pytest
import torch
import torch.distributed as dist

import checkpoint
import train as train_mod
from conftest import run_py
from data.prepare import prepare_corpus
from data.tokenizer import get_tokenizer
from train import TrainConfig, main, train

TINY = dict(n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=2, warmup_steps=2, lr=3e-3, dtype="fp32",
            log_every=1, eval_every=0, ckpt_every=0)


def write_corpus(path, n=24):
    """Arithmetic-ish docs, two chunks each, a latent on the first chunk."""
    with open(path, "w") as f:
        for i in range(n):
            a, b = i % 7, (3 * i) % 10
            f.write(json.dumps({"id": f"d{i}", "chunks": [
                {"suffix": f"Q: {a}+{b}=", "latent": f"{a} plus {b} is {a + b}"},
                {"suffix": f" A: {a + b}.", "latent": None}]}) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "docs.jsonl")


def weights(ckpt):
    return checkpoint.load(ckpt)[0].state_dict()


def max_diff(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


def losses(out):
    return {r["step"]: r["loss"] for r in map(json.loads, open(os.path.join(out, "metrics.jsonl"))) if "loss" in r}


# ----------------------------------------------------------------------------- training

def test_overfits_tiny_corpus(tmp_path):
    text = ["the quick brown fox jumps over the lazy dog. ", "pack my box with five dozen liquor jugs! "]
    path = tmp_path / "tiny.jsonl"
    path.write_text("".join(json.dumps({"id": i, "chunks": [{"suffix": s, "latent": None}]}) + "\n"
                            for i, s in enumerate(text)))
    res = train(TrainConfig(data=str(path), val=str(path), out=str(tmp_path / "o"), n_layer=2, n_head=2,
                            n_embd=64, block_size=32, batch_size=8, max_steps=80, warmup_steps=5, lr=1e-2,
                            min_lr=1e-3, weight_decay=0.0, log_every=0, eval_every=0))
    first = json.loads(open(tmp_path / "o" / "metrics.jsonl").readline())
    assert first["step"] == 80  # log_every=0: only the final record (plus the eval)
    assert res["steps"] == 80 and res["tokens"] == 80 * 8 * 32
    assert res["val_loss"] < 0.3, res  # from ~5.6 (uniform over 261 tokens)


def test_ddp_torchrun_equals_single_process(tmp_path, corpus):
    """2 ranks x 2 sequences x accum 2 == 1 process x 2 sequences x accum 4: same global batch and loss."""
    common = dict(TINY, data=corpus, layout="random", max_steps=4, total_batch_tokens=2 * 2 * 32 * 2)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in common.items()]
    p = run_py(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py", *flags,
                f"--out={tmp_path / 'ddp'}"], env={"OMP_NUM_THREADS": "1"}, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "world 2 | accum 2" in p.stdout
    single = train(TrainConfig(**common, out=str(tmp_path / "one")))
    assert single["config"]["total_batch_tokens"] == 256
    assert max_diff(weights(tmp_path / "ddp" / "ckpt"), weights(single["ckpt"])) < 1e-5
    l_ddp, l_one = losses(tmp_path / "ddp"), losses(tmp_path / "one")
    assert l_ddp.keys() == l_one.keys() and all(abs(l_ddp[k] - l_one[k]) < 1e-5 for k in l_one)


@pytest.fixture(scope="module")
def straight(tmp_path_factory, corpus):
    """The reference: 6 steps in one go, random layout (coins, shuffles and epochs all exercised)."""
    out = tmp_path_factory.mktemp("straight")
    train(TrainConfig(**TINY, data=corpus, layout="random", max_steps=6, out=str(out)))
    return out


def test_resume_equals_straight_run(tmp_path, corpus, straight):
    cfg = TrainConfig(**TINY, data=corpus, layout="random", max_steps=6, out=str(tmp_path))
    half = train(replace(cfg, stop_at=3))
    assert half["steps"] == 3 and checkpoint.load(half["ckpt"])[1]["step"] == 3
    res = train(replace(cfg, resume=True))
    assert res["steps"] == 6
    assert max_diff(weights(res["ckpt"]), weights(straight / "ckpt")) < 1e-6
    assert losses(tmp_path) == losses(straight)  # same batches in the same order, step by step
    meta, ref = checkpoint.load(res["ckpt"])[1], checkpoint.load(straight / "ckpt")[1]
    assert meta["data"] == ref["data"] and meta["step"] == 6
    # resuming a finished run trains nothing more
    assert train(replace(cfg, resume=True))["steps"] == 6


def test_shards_train_like_jsonl_and_resume_exactly(tmp_path, corpus, straight):
    """--data DIR (shards from data.prepare): the same batches as the JSONL file, step for step, and a run
    stopped at step 3 and resumed equals the uninterrupted one."""
    shard_dir = str(tmp_path / "shards")
    prepare_corpus(corpus, shard_dir, workers=1)
    cfg = TrainConfig(**TINY, data=shard_dir, layout="random", max_steps=6, out=str(tmp_path / "straight"))
    whole = train(cfg)
    assert losses(tmp_path / "straight") == losses(straight)  # JSONL and shards: identical training
    assert max_diff(weights(whole["ckpt"]), weights(straight / "ckpt")) < 1e-6
    cfg = replace(cfg, out=str(tmp_path / "resumed"))
    assert train(replace(cfg, stop_at=3))["steps"] == 3
    res = train(replace(cfg, resume=True))
    assert losses(tmp_path / "resumed") == losses(straight)
    assert max_diff(weights(res["ckpt"]), weights(whole["ckpt"])) < 1e-6
    assert checkpoint.load(res["ckpt"])[1]["data"] == checkpoint.load(whole["ckpt"])[1]["data"]


def test_unfinished_shard_dir_is_refused(tmp_path, corpus, capsys):
    (tmp_path / "half").mkdir()  # e.g. what a copy of a killed prepare looks like: arrays but no manifest
    (tmp_path / "half" / "x.bin").write_bytes(b"\0\0")
    with pytest.raises(SystemExit) as e:
        main(["--data", str(tmp_path / "half"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "a directory without a complete shard manifest" in err and err.count("\n") == 1
    prepare_corpus(corpus, str(tmp_path / "s"), workers=1)
    with pytest.raises(ValueError, match="tokenised with 'bytes'"):
        train(TrainConfig(**TINY, data=str(tmp_path / "s"), tokenizer="gpt2", out=str(tmp_path / "o")))


def test_resume_rejects_changed_settings(tmp_path, corpus):
    cfg = dict(TINY, data=corpus, max_steps=2, out=str(tmp_path))
    train(TrainConfig(**cfg))
    with pytest.raises(ValueError, match=r"0\.1 differs from the checkpoint's 0\.003 \(--lr, --resume\)"):
        train(TrainConfig(**{**cfg, "lr": 0.1, "resume": True}))
    meta_path = tmp_path / "ckpt" / "config.json"
    meta = json.loads(meta_path.read_text())
    for old in ({**meta, "data": {"epoch": 0, "pos": 0}},  # a cursor Rows does not write
                {**meta, "train_config": {k: v for k, v in meta["train_config"].items() if k != "seed"}}):
        meta_path.write_text(json.dumps(old))
        with pytest.raises(ValueError, match=r"another version of train\.py: use a fresh --out \(--resume\)"):
            train(TrainConfig(**{**cfg, "resume": True}))


def test_checkpoint_loads_and_interrupted_save_keeps_previous(tmp_path, corpus, straight, monkeypatch):
    cfg = TrainConfig(**TINY, data=corpus, layout="random", max_steps=6, stop_at=3, out=str(tmp_path))
    ckpt = train(cfg)["ckpt"]
    model, meta = checkpoint.load(ckpt)
    assert meta["tokenizer"] == "bytes" and meta["step"] == 3 and meta["train_config"]["layout"] == "random"
    assert model.config.vocab_size == get_tokenizer("bytes").n_vocab
    before = weights(ckpt)

    def crash(*a, **k):  # dies after the model files are written, while writing the optimizer state
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        train(replace(cfg, stop_at=5, resume=True))
    monkeypatch.undo()
    assert checkpoint.load(ckpt)[1]["step"] == 3 and max_diff(weights(ckpt), before) == 0
    # a kill between atomic_dir's two renames leaves only ckpt.old: resume still continues exactly
    os.rename(ckpt, ckpt + ".old")
    res = train(replace(cfg, stop_at=0, resume=True))
    assert res["steps"] == 6 and not os.path.exists(ckpt + ".old")
    assert max_diff(weights(ckpt), weights(straight / "ckpt")) < 1e-6


def test_caller_process_group_is_kept(tmp_path, corpus):
    """em.py under torchrun initialises the group itself; train() must use it and leave it alive."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        res = train(TrainConfig(**TINY, data=corpus, max_steps=2, out=str(tmp_path / "o")))
        assert res["steps"] == 2 and dist.is_initialized()
    finally:
        dist.destroy_process_group()


def test_init_from_hf_gpt2_adds_latent_tokens(tmp_path, corpus):
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=50257, n_positions=64, n_embd=32, n_layer=1, n_head=2))
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    cfg = dict(TINY, data=corpus, layout="prior", init=str(tmp_path / "hf"), max_steps=2, block_size=16,
               out=str(tmp_path / "o"))
    res = train(TrainConfig(**cfg, tokenizer="gpt2"))
    model, meta = checkpoint.load(res["ckpt"])
    assert model.config.vocab_size == 50261 and model.config.block_size == 64 and meta["tokenizer"] == "gpt2"
    assert res["config"]["n_layer"] == 1 and res["config"]["n_embd"] == 32  # resolved from the init model
    with pytest.raises(ValueError, match="tokenizer 'gpt2', but 'bytes'"):
        train(TrainConfig(**cfg, tokenizer="bytes"))
    with pytest.raises(ValueError, match=r"128 exceeds the model's block_size 64 \(--block-size\)"):
        train(TrainConfig(**{**cfg, "block_size": 128}, tokenizer="gpt2"))


# ----------------------------------------------------------------------------- flags

@pytest.mark.parametrize("argv, msg", [
    (["--lr", "-1"], "must be positive, got -1.0 (--lr)"),
    (["--lr", "nan"], "must be positive, got nan (--lr)"),
    (["--data", "/nonexistent/x.jsonl"], "/nonexistent/x.jsonl: no such file (--data)"),
    (["--min-lr", "1"], "1.0 exceeds --lr 0.001 (--min-lr)"),
    (["--init", "/nonexistent/ckpt"], "/nonexistent/ckpt: neither 'scratch' nor a checkpoint directory (--init)"),
    (["--total-batch-tokens", "100"], "100 is not a multiple of"),
    (["--n-embd", "30", "--n-head", "4"], "n_embd 30 is not divisible by n_head 4 (--n-embd)"),
    (["--device", "tpu:0"], "(--device)"),
    (["--device", "cuda:7"], "no such CUDA device here (--device)"),
    (["--out", __file__], "exists and is not a directory (--out)"),
    (["--tokenizer", "sentencepiece"], "'sentencepiece': choose one of bytes, gpt2 or a tokenizer directory"),
    (["--max-steps", "x"], "invalid int value: 'x' (--max-steps)"),
    (["--data", "EMPTY"], "holds no documents"),
    (["--data", "BADLINE"], "expected a JSON object, got list ("),
])
def test_bad_flags_stop_with_one_line(tmp_path, corpus, capsys, argv, msg):
    files = {"EMPTY": tmp_path / "empty.jsonl", "BADLINE": tmp_path / "bad.jsonl"}
    files["EMPTY"].write_text("")
    files["BADLINE"].write_text('{"text": "Fine."}\n[1]\n')
    argv = [str(files.get(a, a)) for a in argv]
    with pytest.raises(SystemExit) as e:
        main(["--data", corpus, "--out", str(tmp_path / "o"), "--block-size", "32", *argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and msg in err and err.count("\n") == 1, err
    assert not os.path.exists(tmp_path / "o")  # stopped before anything was written


def test_argparse_rejects_unknown_choices(capsys):
    for argv in (["--tokenizer", "sentencepiece"], ["--layout", "sideways"], ["--lr", "fast"]):
        with pytest.raises(SystemExit) as e:
            main(["--data", "x", *argv])
        assert e.value.code == 2 and "error:" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"'sentencepiece': choose one of bytes, gpt2 or a tokenizer dir"):
        train(TrainConfig(data=__file__, tokenizer="sentencepiece"))


def test_resume_does_not_duplicate_metric_rows(tmp_path, corpus):
    """A run killed after its checkpoint had logged more rows: the resumed run drops them (it logs them again),
    and a half-written last line, so every step appears once."""
    val = write_corpus(tmp_path / "val.jsonl", n=4)
    cfg = TrainConfig(**TINY, data=corpus, val=val, max_steps=6, stop_at=3, out=str(tmp_path / "o"))
    train(cfg)  # checkpoint at step 3
    path = tmp_path / "o" / "metrics.jsonl"
    with open(path, "a") as f:  # what a kill after step 5 leaves behind, cut mid-line
        f.write(json.dumps({"step": 4, "loss": 9.0}) + "\n" + json.dumps({"step": 5, "loss": 9.0}) + '\n{"step": 6, "lo')
    train(replace(cfg, stop_at=0, resume=True))
    rows = [json.loads(line) for line in open(path)]
    loss_steps = [r["step"] for r in rows if "loss" in r]
    assert loss_steps == [1, 2, 3, 4, 5, 6] and all(r.get("loss") != 9.0 for r in rows)
    assert [r["step"] for r in rows if "val_loss" in r] == [3, 6]
    train(replace(cfg, stop_at=0, resume=True))  # resuming a finished run logs its closing evaluation once
    assert [json.loads(line) for line in open(path)] == rows


def test_one_run_per_out_lock_released_on_error(tmp_path, corpus, capsys, monkeypatch):
    """train.py holds out/LOCK while it trains: a second process on a live run's --out is refused at once, a dead
    holder's LOCK is taken, and the lock is released (and a directory it created removed) when training fails."""
    import socket
    import subprocess
    import sys
    out = tmp_path / "o"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (out / "LOCK").write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname()}))
        with pytest.raises(SystemExit) as e:
            main(["--data", corpus, "--out", str(out), "--block-size", "32"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and f"in use by process {sleeper.pid}" in err and err.count("\n") == 1
    finally:
        sleeper.kill()
        sleeper.wait()
    seen = []

    def fails(cfg, rank, world, local_rank):
        seen.append(json.loads((tmp_path / "fresh" / "LOCK").read_text())["pid"])
        raise ValueError("disk full")
    monkeypatch.setattr(train_mod, "_train", fails)
    with pytest.raises(SystemExit):
        main(["--data", corpus, "--out", str(tmp_path / "fresh"), "--block-size", "32"])
    assert seen == [os.getpid()] and not (tmp_path / "fresh").exists()
    (out / "LOCK").write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname()}))  # dead by now
    monkeypatch.setattr(train_mod, "_train", lambda cfg, *a: seen.append((out / "LOCK").read_text()) or {})
    train(TrainConfig(data=corpus, out=str(out), block_size=32))
    assert str(os.getpid()) in seen[-1] and not (out / "LOCK").exists()
