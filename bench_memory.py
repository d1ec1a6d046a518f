"""bench.py's memory section (`python bench.py memory`): peak RSS and start-up of train.py on JSONL vs token
shards, one E-step unit on token shards, and em.py's input check + data preparation, each from 1M to 100M tokens.
Every measurement runs in a fresh subprocess, its peak RSS read from wait4; corpora are built once under
$TMPDIR/bolt_bench_memory."""


def _memory_corpus(path, n_tokens=None, n_docs=None, doc_tokens=1000, seed=0, text=False):
    """A synthetic corpus of ~n_tokens byte tokens (or n_docs documents) in the authors' {"chunks"} form:
    documents of >= doc_tokens in chunks of 15-35 random words, a latent on half the chunks (some empty); text:
    the same documents as {"text"} lines without latents, for em.py to chunk. Written once (temp file + rename)
    and reused."""
    import json
    import os
    import random
    if os.path.exists(path):
        return path
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 8))) for _ in range(2000)]
    tmp, n, i = path + ".tmp", 0, 0
    with open(tmp, "w") as f:
        while (n < n_tokens) if n_docs is None else (i < n_docs):
            chunks, size = [], 0
            while size < doc_tokens:
                x = " ".join(rng.choices(words, k=rng.randint(15, 35))) + ". "
                z = None if rng.random() < 0.5 else " ".join(rng.choices(words, k=rng.randint(0, 20)))
                chunks.append({"suffix": x, "latent": z})
                size += len(x) + (0 if text else len(z or ""))
            doc = {"text": "".join(c["suffix"] for c in chunks)} if text else {"chunks": chunks}
            f.write(json.dumps({"id": f"d{i}", **doc}) + "\n")
            n, i = n + size, i + 1
    os.replace(tmp, path)
    return path


def _run_measured(argv, env):
    """Run a command; -> (peak RSS in MB of that process alone, wall seconds). os.wait4 gives the child's own
    rusage (RUSAGE_CHILDREN would be the maximum over every child so far)."""
    import os
    import subprocess
    import tempfile
    import time
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode:
            err.seek(0)
            raise RuntimeError(f"{' '.join(argv[:4])} ... failed:\n{err.read().decode()[-2000:]}")
    return ru.ru_maxrss / 1024, wall  # ru_maxrss is in KiB on Linux


def bench_memory():
    """Peak RSS and wall time (start-up + 2 steps) of `train.py --max-steps 2` with a 1-layer model, each run a
    fresh subprocess, reading a corpus as JSONL vs as token shards (python -m data.prepare), on synthetic corpora:
    the issue's 20k / 80k documents and ~1M / ~100M tokens. The baseline is the JSONL path in the same run; the
    flat-memory claim is the shard path's growth from 1M to 100M tokens. Corpora and shards are built once under
    $TMPDIR/bolt_bench_memory (the 100M one: ~120 MB of JSONL, ~1 min to write, ~1 min to tokenise on 2 cores).
    Then one E-step unit's peak RSS on the 1M- and 100M-token shards (_memory_estep)."""
    import json
    import os
    import sys
    import tempfile
    import time
    root = os.path.join(tempfile.gettempdir(), "bolt_bench_memory")
    os.makedirs(root, exist_ok=True)
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=here)
    corpora = [("20k docs", dict(n_docs=20_000, doc_tokens=150)), ("80k docs", dict(n_docs=80_000, doc_tokens=150)),
               ("1M tokens", dict(n_tokens=1_000_000)), ("100M tokens", dict(n_tokens=100_000_000))]
    train = [sys.executable, os.path.join(here, "train.py"), "--n-layer", "1", "--n-head", "2", "--n-embd", "64",
             "--block-size", "128", "--batch-size", "4", "--max-steps", "2", "--layout", "random", "--dtype", "fp32",
             "--log-every", "0", "--eval-every", "0", "--ckpt-every", "0"]
    print(f"train.py {' '.join(train[2:])} --data <JSONL or shard dir>; OMP_NUM_THREADS=1; load average "
          f"{os.getloadavg()[0]:.1f}")
    rows = {}
    for name, kw in corpora:
        tag = name.replace(" ", "")
        jsonl = _memory_corpus(os.path.join(root, f"{tag}.jsonl"), **kw)
        shard_dir = os.path.join(root, tag)
        if not os.path.exists(os.path.join(shard_dir, "manifest.json")):
            t0 = time.perf_counter()
            _run_measured([sys.executable, "-m", "data.prepare", "--corpus", jsonl, "--out", shard_dir], env)
            print(f"  {name}: python -m data.prepare took {time.perf_counter() - t0:.0f} s ({os.cpu_count()} workers)")
        c = json.load(open(os.path.join(shard_dir, "manifest.json")))["counts"]
        tokens = c["tokens"] + c["latent_tokens"]
        with tempfile.TemporaryDirectory() as out:
            jr, jt = _run_measured(train + ["--data", jsonl, "--out", os.path.join(out, "j")], env)
            sr, st = _run_measured(train + ["--data", shard_dir, "--out", os.path.join(out, "s")], env)
        rows[name] = (jr, sr)
        print(f"  {name:12s} {c['docs']:>7,} docs {tokens / 1e6:7.1f}M tokens {os.path.getsize(jsonl) / 1e6:7.1f} MB | "
              f"JSONL {jr:7,.0f} MB {jt:6.1f} s | shards {sr:5,.0f} MB {st:5.1f} s | RSS JSONL/shards "
              f"{jr / sr:5.2f}x, time {jt / st:5.2f}x")
    (j1, s1), (j100, s100) = rows["1M tokens"], rows["100M tokens"]
    print(f"peak RSS growth 1M -> 100M tokens: shards {s100 / s1 - 1:+.1%} (target < +10%), JSONL {j100 / j1 - 1:+.0%}")
    _memory_estep({name: os.path.join(root, name.replace(" ", "")) for name in ("1M tokens", "100M tokens")}, env)
    _memory_prepare(root, env)


ESTEP_UNIT = dict(k=4, max_latent=16, block_size=128, n_layer=1, n_head=2, n_embd=64, gen_batch=256)
ESTEP_CHUNKS = 64  # chunks per unit (em.py's default is 512: the same code, fewer samples to wait for)


def _estep_unit(shard_dir, mode):
    """One E-step unit as em.py runs it (em.unit_work on unit 0 of the target shards, --estep mode), in this
    process: a tiny untrained model, ESTEP_UNIT's sizes. What a rank holds besides the model is the memmapped
    corpus, the unit boundaries (O(n_units)) and the unit's documents and rows."""
    import em
    from data import config as C
    from data import estep_files
    from data.shards import open_shards
    from checkpoint import save
    from data.tokenizer import get_tokenizer
    from model import GPT, GPTConfig
    tok, target = get_tokenizer("bytes"), open_shards(shard_dir)
    cfg = C.EMConfig(estep=mode, **ESTEP_UNIT)
    model = GPT(GPTConfig(vocab_size=tok.n_vocab, block_size=cfg.block_size, n_layer=cfg.n_layer,
                          n_head=cfg.n_head, n_embd=cfg.n_embd)).eval()
    bounds = estep_files.cut_units(target.a["doc_off"], ESTEP_CHUNKS, whole=mode == "sequential")
    rows = em.unit_work(model, tok, cfg, target, 1, bounds)(0)
    print(f"{len(bounds) - 1} units, unit 0: {len(rows)} chunks")


def _memory_estep(shard_dirs, env):
    """Peak RSS of one E-step unit (_estep_unit, a fresh subprocess per measurement, as the train.py rows) on
    the shards of the 1M- and 100M-token corpora, for both E-step modes; the growth is the flat-memory claim."""
    import sys
    print(f"E-step unit: em.unit_work on unit 0 ({ESTEP_CHUNKS} chunks; sequential: whole documents), "
          f"{ESTEP_UNIT}; OMP_NUM_THREADS=1")
    for mode in ("paper", "sequential"):
        rss = {}
        for name, shard_dir in shard_dirs.items():
            code = f"import bench_memory; bench_memory._estep_unit({shard_dir!r}, {mode!r})"
            rss[name], wall = _run_measured([sys.executable, "-c", code], env)
            print(f"  --estep {mode:10s} {name:12s} peak RSS {rss[name]:5,.0f} MB  {wall:5.1f} s")
        (a, b) = rss.values()
        print(f"E-step unit ({mode}) peak RSS growth {' -> '.join(rss)}: {b / a - 1:+.1%} (target < +10%)")


PREPARE = dict(tokenizer="bytes", block_size=1024, max_latent=32)  # {"text"} chunked to <= 256 tokens


def _prepare_data(corpus, ckpt, teacher, out):
    """em.py's input check and data preparation on a --corpus, in this process, as em.py's run() starts:
    check_inputs (every flag, the corpus parsed and chunked, the --init checkpoint loaded) then write_data
    (out/data: target, target_gold and heldout JSONL, the target token shards)."""
    import os
    from data import config as C
    from data import rundir
    cfg = C.EMConfig(corpus=corpus, init=ckpt, teacher_latents=teacher, out=out, **PREPARE)
    rundir.write_data(cfg, C.check_inputs(cfg), os.path.join(out, "data"))


def _memory_prepare(root=None, env=None):
    """Peak RSS of em.py's input check + data preparation (_prepare_data, a fresh subprocess per measurement)
    on {"text"} corpora of ~1M, ~10M and ~100M byte tokens; the growth from 1M to 100M is the flat-memory claim
    (10M tells a constant, such as the shard writer's 4M-token buffer, from a growth with the corpus). The
    corpora, a tiny --init checkpoint and a --teacher-latents file are built once under root."""
    import json
    import os
    import sys
    import tempfile
    from checkpoint import save
    from data.tokenizer import get_tokenizer
    from model import GPT, GPTConfig
    here = os.path.dirname(os.path.abspath(__file__))
    root = root or os.path.join(tempfile.gettempdir(), "bolt_bench_memory")
    env = env or dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=here)
    ckpt, teacher = os.path.join(root, "prepare_ckpt"), os.path.join(root, "prepare_teacher.jsonl")
    if not os.path.exists(os.path.join(ckpt, "config.json")):
        save(GPT(GPTConfig(vocab_size=get_tokenizer("bytes").n_vocab, block_size=PREPARE["block_size"], n_layer=1,
                           n_head=1, n_embd=16)), ckpt, {"tokenizer": "bytes"})
    with open(teacher, "w") as f:
        f.write("".join(json.dumps({"chunks": [{"suffix": f"T{i}. ", "latent": "why"}]}) + "\n" for i in range(4)))
    print(f"em.py check_inputs + write_data on a {{\"text\"}} --corpus, {PREPARE}; OMP_NUM_THREADS=1")
    rss = {}
    for name, n in (("1M tokens", 1_000_000), ("10M tokens", 10_000_000), ("100M tokens", 100_000_000)):
        corpus = _memory_corpus(os.path.join(root, f"{name.replace(' ', '')}_text.jsonl"), n_tokens=n, text=True)
        with tempfile.TemporaryDirectory() as out:
            code = f"import bench_memory; bench_memory._prepare_data({corpus!r}, {ckpt!r}, {teacher!r}, {out!r})"
            rss[name], wall = _run_measured([sys.executable, "-c", code], env)
        print(f"  {name:12s} {os.path.getsize(corpus) / 1e6:7.1f} MB of JSONL  peak RSS {rss[name]:5,.0f} MB  "
              f"{wall:6.1f} s")
    a, b = rss["1M tokens"], rss["100M tokens"]
    print(f"input check + data preparation peak RSS growth 1M -> 100M tokens: {b / a - 1:+.1%} (target < +10%)")
