"""em.py's run directory: every check before any work, and the data a run prepares under --out/data.

Not the method (that is em.py): the mechanics that make a run refusable in one line and resumable.
  check_inputs   one pass over every flag, input file and checkpoint before anything is written or trained:
                 raises ValueError with every problem on one line, each naming its flag or file:line
  out_errors     an existing --out must hold the same configuration, and data a phase trained on must still be
                 what the inputs give (data_fingerprint: a sha256 of every input file and the data flags)
  write_data     the target corpus (latents stripped; as JSONL and as token shards), warm-start set, held-out
                 docs and questions, and the raw arms' training mixes (write_raw_data), atomically
The E-step's files: data/estep_files.py. No torch at import: checkpoint_error and size_errors import torch
when they run. `cfg` is em.py's EMConfig (read by field name; this module never imports em.py).
"""
import contextlib
import math
import os
import random
import shutil
from dataclasses import asdict

from data import questions as Q
from data import world as W
from data.cli import out_dir_error
from data.corpus import (atomic_open, doc_line, iter_docs, note_stats, read_docs, read_json, scan_docs, sha256_file,
                         write_docs, write_json)
from data.layout import check_latent_ids, check_latent_marks, encode_doc, inline_latents
from data.shards import is_shard_dir, open_shards, write_shards
from data.tokenizer import get_tokenizer, tokenizer_error

# the flags that shape out/data besides its input files; data/DONE records them (data_fingerprint)
DATA_FLAGS = ("tokenizer", "block_size", "seed", "world_target", "world_warm", "world_heldout", "world_questions",
              "world_shape", "world_dev")
# smallest value of each integer flag; base_steps is checked apart (unused with --init)
MINIMUM = dict(iters=0, k=1, n_layer=1, n_head=1, n_embd=1, block_size=1, batch_size=1, warm_steps=1, m_steps=0,
               max_latent=1, top_k=0, gen_batch=1, world_target=1, world_warm=1, world_heldout=1, world_questions=0,
               world_dev=0)
# em.py's raw baselines (--raw-arms; what each trains on: em.py raw_arm), each also "<arm>+replay": the raw
# text mixed 1:1 by documents with the base corpus
RAW_ARMS = ("tokens", "flops", "inline", "warm", "pipeline")
# changing these between runs in the same --out would mix results; iters and report options may change
RESUMABLE_KEYS = {"iters", "no_baselines", "raw_arms", "gen_batch", "out"}  # raw_arms: each arm its own phase
# tokens a window keeps beside a latent (BOS, the marks, some text): --max-latent and a teacher latent get the rest
SLACK = 8
# chunks in one E-step unit and one evaluation group (em.estep, em.eval_nll): their K samples are held at once
UNIT = 512
# a floor of the memory one latent sample holds while its unit runs: prompt references, the sampled tokens and
# log-probs, the scored continuation (measured with tracemalloc on a 1-layer model: 3.0 KB at --max-latent 8,
# 4.9 KB at 32)
SAMPLE_BYTES = 1024
# evaluation only: changing them re-evaluates (eval.json records an eval_id) and never mixes training results
EVAL_KEYS = {"eval_ks", "questions", "dev_questions", "answer_regex", "seeds"}


def flag(name):
    return "--" + name.replace("_", "-")


def is_count(s):
    """An integer >= 0 written in ASCII digits (int() also reads other scripts' digits)."""
    s = s.strip()
    return s.isascii() and s.isdigit()


def eval_ks(cfg):
    """--eval-ks "1,2,4" -> [1, 2, 4] (flag_errors has checked it)."""
    return [int(k) for k in cfg.eval_ks.split(",")]


def raw_arms(cfg):
    """--raw-arms "inline+replay,warm" -> [("inline", True), ("warm", False)] (flag_errors has checked it)."""
    return [(a.split("+")[0], a.endswith("+replay")) for a in cfg.raw_arms.split(",") if a]


def raw_key(arm, replay):
    """A raw arm's key in read_data's paths and its phase name: raw_warm, raw_inline_replay (never a bare arm
    name, which would shadow the warm start's own "warm" path)."""
    return f"raw_{arm}" + "_replay" * replay


def raw_arm_errors(cfg):
    """--raw-arms: a comma list of RAW_ARMS names, each optionally +replay, none twice; replay needs the base
    corpus, which only the built-in world has."""
    arms = cfg.raw_arms.split(",") if cfg.raw_arms else []
    names = {a.split("+")[0] if a.endswith("+replay") else a for a in arms}
    return [msg for bad, msg in (
        (not names <= set(RAW_ARMS), f"must be a comma list of {', '.join(RAW_ARMS)} (each optionally +replay), "
                                     f"got {cfg.raw_arms!r} (--raw-arms)"),
        (len(set(arms)) != len(arms), f"repeats an arm: {cfg.raw_arms!r} (--raw-arms)"),
        (bool(cfg.corpus) and any(a.endswith("+replay") for a in arms),
         "+replay mixes in the built-in world's base corpus; a --corpus run has none (--raw-arms)"),
    ) if bad]


def world_config(cfg):
    return W.WorldConfig(seed=cfg.seed, n_target=cfg.world_target, n_warm=cfg.world_warm,
                         n_heldout=cfg.world_heldout, n_questions=cfg.world_questions, n_dev=cfg.world_dev,
                         shape=cfg.world_shape,
                         chunk_tokens=cfg.block_size // 4)  # prose: chunked as write_data chunks a --corpus


# ----------------------------------------------------------------------------- flags

def flag_errors(cfg, eval_only=False, ckpt="", phase_errors=None):
    """Every range and cross-flag rule for every phase em.py will run (base, warm, M-steps, oracle, baselines,
    E-step, evaluation), named as em.py's flags. phase_errors(cfg) -> what train.py would refuse in the phases'
    configs, asked only when the flags themselves pass. -> list of one-line messages."""
    errors = [f"must be >= {lo}, got {getattr(cfg, k)} ({flag(k)})" for k, lo in MINIMUM.items()
              if getattr(cfg, k) < lo]
    positive = lambda v: math.isfinite(v) and v > 0
    ks = cfg.eval_ks.split(",")
    ks_ok = all(is_count(k) and int(k) >= 1 for k in ks)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    errors += [msg for bad, msg in (
        (not cfg.init and cfg.base_steps < 1, f"must be >= 1 without --init, got {cfg.base_steps} (--base-steps)"),
        (not positive(cfg.lr), f"must be a positive number, got {cfg.lr} (--lr)"),
        (not positive(cfg.base_lr), f"must be a positive number, got {cfg.base_lr} (--base-lr)"),
        (not positive(cfg.m_epochs), f"must be a positive number, got {cfg.m_epochs} (--m-epochs)"),
        # temperature 0 is greedy: K identical samples whose weights say nothing, so only K = 1 may use it
        (not (math.isfinite(cfg.temperature) and cfg.temperature >= 0),
         f"must be a number >= 0, got {cfg.temperature} (--temperature)"),
        (cfg.temperature == 0 and cfg.k > 1, "0 (greedy) draws K identical latents: use --k 1 or a temperature > 0 "
                                             "(--temperature)"),
        (not 0 < cfg.top_p <= 1, f"must be in (0, 1], got {cfg.top_p} (--top-p)"),
        (cfg.batch_size % world != 0, f"{cfg.batch_size} is not divisible by the {world} ranks (--batch-size)"),
        (not ks_ok, f"must be a comma list of integers >= 1 (ASCII digits), got {cfg.eval_ks!r} (--eval-ks)"),
        (ks_ok and len({int(k) for k in ks}) != len(ks), f"repeats a K, got {cfg.eval_ks!r} (--eval-ks)"),
        (bool(tokenizer_error(cfg.tokenizer)), f"{tokenizer_error(cfg.tokenizer)} (--tokenizer)"),
        (cfg.estep not in ("paper", "sequential"), "must be paper or sequential (--estep)"),
        (cfg.world_shape not in W.SHAPES, f"must be one of {', '.join(W.SHAPES)}, got {cfg.world_shape!r} "
                                          "(--world-shape)"),
        (bool(cfg.corpus) and not cfg.init and not eval_only, "--corpus needs --init (base weights for that corpus)"),
        (bool(cfg.corpus) and not cfg.teacher_latents and not eval_only,
         "--corpus needs --teacher-latents (the warm-start set)"),
        (cfg.max_latent + SLACK > cfg.block_size, f"{cfg.max_latent} leaves no room in --block-size "
                                                  f"{cfg.block_size} (--max-latent)"),
        (eval_only and not ckpt, "--eval needs --ckpt DIR (--ckpt)"),
        (not 0 <= cfg.seed < 2**63, f"must be in [0, 2**63), got {cfg.seed} (--seed)"),
    ) if bad] + raw_arm_errors(cfg)
    if not errors and phase_errors:  # a safety net: the checks above should leave train.py nothing to refuse
        errors += phase_errors(cfg)
    n = W.n_problems(world_config(cfg)) if cfg.world_shape in W.SHAPES else 0  # a prose document holds several
    if not cfg.corpus and n >= W.problem_space(world_config(cfg)):
        errors.append(f"the built-in world has {W.problem_space(world_config(cfg))} problems, fewer than {n} "
                      "(--world-target + --world-warm + --world-heldout + --world-questions + --world-dev)")
    return errors


def arg_errors(cfg, given, eval_only, ckpt):
    """The command line's own rules: --seeds against --seed and --eval (`given`: the flags typed), every named
    path exists, --answer-regex compiles."""
    seeds = cfg.seeds.split(",")
    seeds_ok = all(is_count(x) for x in seeds)
    errors = [msg for bad, msg in (
        (bool(cfg.seeds) and not seeds_ok, "must be comma-separated integers >= 0 (ASCII digits), e.g. 0,1,2 "
                                           "(--seeds)"),
        (bool(cfg.seeds) and seeds_ok and any(int(x) >= 2**63 for x in seeds),
         f"must be in [0, 2**63), got {max(seeds, key=int) if seeds_ok else ''} (--seeds)"),
        (bool(cfg.seeds) and seeds_ok and len({int(x) for x in seeds}) != len(seeds), "repeats a seed (--seeds)"),
        (bool(cfg.seeds) and "seed" in given, "pass --seed or --seeds, not both (--seeds)"),
        (bool(cfg.seeds) and eval_only, "--eval evaluates one --ckpt: drop --seeds (--seeds)"),
    ) if bad]
    for name, p in (("corpus", cfg.corpus), ("teacher_latents", cfg.teacher_latents), ("val", cfg.val),
                    ("init", cfg.init), ("ckpt", ckpt), ("questions", cfg.questions),
                    ("dev_questions", cfg.dev_questions)):
        if p and not os.path.exists(p):
            errors.append(f"{p}: no such file or directory ({flag(name)})")
        elif p and name not in ("init", "ckpt") and os.path.isdir(p):
            errors.append(f"{p} is a directory; {flag(name)} takes a file ({flag(name)})")
    try:
        if cfg.answer_regex:
            Q.check_regex(cfg.answer_regex, "--answer-regex")
    except ValueError as e:
        errors.append(str(e))
    return errors


# ----------------------------------------------------------------------------- input files and --out

class Docs:
    """A checked input corpus, read again one document at a time each time it is iterated (scan_docs, with the
    chunking flags it was checked with): memory of one document, whatever the file's size. len() and `latent`
    (the index of the first document holding a latent, None if none does) are what the check pass counted."""

    def __init__(self, path, kw, n, latent):
        self.path, self.kw, self.n, self.latent = path, kw, n, latent

    def __iter__(self):
        return scan_docs(self.path, **self.kw)

    def __len__(self):
        return self.n


def read_input(path, name, check, stats, **kw):
    """Check one input corpus in one streaming pass (every line parsed and its latents checked by `check`, nothing
    kept but counts; `stats` gets scan_docs' counts, for note_stats once every input passed);
    -> (Docs, error or None), ([], error) when a line is malformed or the file unreadable."""
    n, latent = 0, None
    try:
        for doc in scan_docs(path, stats=stats, check=check, **kw):
            if latent is None and any(c["latent"] is not None for c in doc["chunks"]):
                latent = n
            n += 1
    except ValueError as e:  # scan_docs names the file and line
        return [], str(e)
    except OSError as e:
        return [], f"{path}: {e.strerror or e} ({flag(name)})"
    return Docs(path, kw, n, latent), None if n else f"{path} holds no documents ({flag(name)})"


def read_questions(cfg, tok, name="questions"):
    """--questions (or --dev-questions) read whole, once (the questions and the rules are inputs: refused now,
    not after hours of training); -> (questions or None, error or None)."""
    path = getattr(cfg, name)
    if not path or not os.path.exists(path):
        return None, None
    try:
        return Q.read_questions(path, tok), None
    except (ValueError, OSError) as e:
        return None, f"{e} ({flag(name)})"


def checkpoint_error(path, name, tok, block_size):
    """-> (why `path` cannot be this run's model or None, its GPTConfig or None): checkpoint.check_checkpoint reads
    its config.json and safetensors header(s) only (no weight), and the run's tokenizer and context must fit it."""
    from checkpoint import check_checkpoint  # torch only when there is a checkpoint to check
    try:
        config, _ = check_checkpoint(path, tok)
    except ValueError as e:
        return f"{e} ({flag(name)})", None
    if block_size > config.block_size:
        return (f"--block-size {block_size} exceeds the model's block_size {config.block_size} ({flag(name)})",
                config)
    return None, config


def size_errors(cfg, config, eval_only=False):
    """The size flags against what this machine can hold for the model `config` (memory.py's floors: a flag is
    refused only when even the floor does not fit): the model itself (with its AdamW state when it trains), K and
    the largest --eval-ks (a unit's UNIT chunks x K samples in host memory), --gen-batch (generation's KV cache
    beside the model) and a training step per rank (--batch-size). Every message says how many would fit."""
    from memory import device_bytes, gb, kv_cache_bytes, param_count, train_bytes
    host, dev, T, P = device_bytes("cpu"), device_bytes("auto"), cfg.block_size, param_count(config)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    B, model_flags = cfg.batch_size // world, "--init" if cfg.init else "--n-layer, --n-embd, --block-size"
    model = 4 * P if eval_only else train_bytes(config, 1, T, T)
    if model > dev:
        what = "its fp32 weights" if eval_only else "weights, gradients and AdamW moments in fp32, one sequence"
        return [f"the model's {P:,} parameters need at least {gb(model)} ({what}), more than the {gb(dev)} here "
                f"({'--ckpt' if eval_only else model_flags})"]
    errors, k_max = [], host // (UNIT * SAMPLE_BYTES)
    for name, k in (() if eval_only else (("k", cfg.k),)) + (("eval_ks", max(eval_ks(cfg))),):
        if k > k_max:
            errors.append(f"{k} samples for each of a unit's {UNIT} chunks hold at least {gb(UNIT * k * SAMPLE_BYTES)}"
                          f", more than the {gb(host)} here: at most {k_max} fit ({flag(name)})")
    per_row = kv_cache_bytes(config, 1, T)
    if 4 * P + cfg.gen_batch * per_row > dev:
        errors.append(f"{cfg.gen_batch} rows of generation's KV cache ({T} positions) need at least "
                      f"{gb(cfg.gen_batch * per_row)} beside the model's {gb(4 * P)}, more than the {gb(dev)} here: "
                      f"at most {(dev - 4 * P) // per_row} fit (--gen-batch)")
    if not eval_only and train_bytes(config, B, T, B * T) > dev:
        per_seq = train_bytes(config, 2, T, 2 * T) - train_bytes(config, 1, T, T)
        errors.append(f"{cfg.batch_size} sequences of {T} tokens per step ({B} per rank) need at least "
                      f"{gb(train_bytes(config, B, T, B * T))} to train, more than the {gb(dev)} here: at most "
                      f"{(dev - train_bytes(config, 0, T, 0)) // per_seq * world} fit (--batch-size)")
    return errors


def data_fingerprint(cfg):
    """What shaped out/data: a sha256 of every input file and the flags that chunk or build the documents."""
    return {"inputs": {name: sha256_file(getattr(cfg, name)) for name in ("corpus", "teacher_latents", "val")
                       if getattr(cfg, name)},
            "flags": {k: getattr(cfg, k) for k in DATA_FLAGS}}


def other_version(path):
    return f"{path} was written by another version of em.py: use a fresh --out (--out)"


def out_errors(cfg, fp):
    """An existing --out must hold this configuration, and data that phases trained on must be what the
    inputs give now (else the corrected or changed command would silently mix results)."""
    path, done = os.path.join(cfg.out, "config.json"), os.path.join(cfg.out, "data", "DONE")
    errors = []
    for p in filter(os.path.isfile, (path, done)):
        try:
            read_json(p)
        except (ValueError, OSError) as e:
            return [f"{p} is unreadable ({e}); use another --out or delete it (--out)"]
    if os.path.isfile(path):
        old, mine = read_json(path), asdict(cfg)
        if set(old) != set(mine):
            return [other_version(path)]
        diff = [k for k in mine if k not in RESUMABLE_KEYS | EVAL_KEYS and old[k] != mine[k]]
        if diff:
            errors.append(f"{cfg.out} holds a run with another configuration ("
                          + ", ".join(f"{k}: {old.get(k)!r} -> {mine[k]!r}" for k in diff)
                          + "); use another --out or delete it (--out)")
    if os.path.isfile(done):
        old = read_json(done).get("fingerprint")
        if old is None or set(old.get("flags", ())) != set(fp["flags"]):
            return errors + [other_version(done)]
        if old != fp:
            changed = [flag(k) for k in fp["inputs"].keys() | old["inputs"].keys()
                       if fp["inputs"].get(k) != old["inputs"].get(k)]
            changed += [flag(k) for k in fp["flags"] if fp["flags"][k] != old["flags"][k]]
            trained = sorted(n for n in os.listdir(cfg.out) if n != "data" and os.path.isdir(os.path.join(cfg.out, n)))
            if trained:
                errors.append(f"{', '.join(changed)} changed since {cfg.out} prepared its data, and {trained[0]} "
                              f"trained on the old data; use another --out or delete it ({', '.join(changed)})")
    return errors


def check_inputs(cfg, ckpt="", eval_only=False, phase_errors=None):
    """One validation pass before anything is written or trained: flags, tokenizer, --out, every input file
    parsed line by line (read_input: memory flat in its size; a latent to train on, in --teacher-latents or
    --corpus, refused if it holds a layout mark), every checkpoint loaded once, and an existing
    --out's configuration and data. Raises ValueError with every problem on one line;
    -> {'tok', 'docs': {flag name: Docs, read again when iterated}, 'questions', 'dev_questions', 'fingerprint'}."""
    errors = flag_errors(cfg, eval_only, ckpt, phase_errors)
    if errors:  # the files below are read with these flags: they must make sense first
        raise ValueError("; ".join(errors))
    try:
        tok = get_tokenizer(cfg.tokenizer, cfg.bpe_dir or None)
    except (ValueError, OSError) as e:
        raise ValueError(f"{e} (--tokenizer {cfg.tokenizer})") from None
    budget = dict(tok=tok, max_tokens=cfg.block_size // 4)  # what write_data chunks {"text"} documents with
    heldout = cfg.val or os.path.join(cfg.out, "data", "heldout.jsonl")
    reads = ({"val": (heldout, {})} if eval_only else
             {"corpus": (cfg.corpus, budget), "val": (cfg.val, budget if cfg.corpus else {}),
              "teacher_latents": (cfg.teacher_latents, {})})
    # a latent no E-step could write (longer than the largest --max-latent) or ids another tokenizer's
    room, why = cfg.block_size - SLACK, f"--block-size {cfg.block_size} leaves a latent that many tokens, as it " \
                                        "does --max-latent"
    ids = lambda doc: check_latent_ids(tok, doc, room, why)
    (questions, q_error), (dev, dev_error) = read_questions(cfg, tok), read_questions(cfg, tok, "dev_questions")
    docs, errors, stats = {}, [q_error, dev_error] + ([] if eval_only else [out_dir_error(cfg.out)]), {}
    if eval_only and not os.path.isfile(heldout):
        errors.append(f"no held-out documents: pass --val PATH (or --out of a run that prepared {heldout})")
    # the latents trained on (warm start, oracle) also hold no layout mark
    trained = lambda doc: (ids(doc), check_latent_marks(tok, doc))
    for name, (path, kw) in reads.items():
        if path and not (eval_only and not os.path.isfile(path)):
            stats[path] = {}
            docs[name], err = read_input(path, name, trained if name in ("corpus", "teacher_latents") else ids,
                                         stats[path], **kw)
            errors.append(err)
    if cfg.corpus and not cfg.val and not eval_only and 0 < len(docs["corpus"]) < 2:
        errors.append(f"{cfg.corpus} holds one document: a target corpus and held-out docs need 2 (--corpus)")
    if docs.get("teacher_latents") and \
            not any(c["latent"] for d in docs["teacher_latents"] for c in d["chunks"]):
        errors.append(f"{cfg.teacher_latents} holds no latents: the warm start needs them (--teacher-latents)")
    model = None  # the model the run trains or evaluates: --init's or --ckpt's, else the flags' shape
    for name, path in (("init", cfg.init), ("ckpt", ckpt if eval_only else "")):
        if path:
            err, model = checkpoint_error(path, name, tok, cfg.block_size)
            errors.append(err)
    if not any(errors):
        from model import GPTConfig
        errors += size_errors(cfg, model or GPTConfig(block_size=cfg.block_size, vocab_size=tok.n_vocab,
                                                      n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd),
                              eval_only)
    fp = None
    if not eval_only and not any(errors):  # every input is a readable file by now
        fp = data_fingerprint(cfg)
        errors += out_errors(cfg, fp) if os.path.isdir(cfg.out) else []
    errors = [e for e in errors if e]
    if errors:
        raise ValueError("; ".join(errors))
    for path, st in stats.items():  # skipped and repeated documents, once the command is accepted
        note_stats(path, st)
    return {"tok": tok, "docs": docs, "questions": questions, "dev_questions": dev, "fingerprint": fp}


# ----------------------------------------------------------------------------- out/data

def write_data(cfg, checked, ddir):
    """Write out/data from check_inputs' documents (rank 0 only): the target corpus with its latents stripped
    (and target_gold.jsonl, the oracle's teacher latents, when it has some), the held-out docs (--val, else the
    corpus' last 5%, at least one document), the warm-start set; or the built-in world. DONE last, recording
    the fingerprint. Data prepared from other inputs or flags is removed first: none of it may survive."""
    docs_in, done = checked["docs"], os.path.join(ddir, "DONE")
    if os.path.exists(done) and read_json(done).get("fingerprint") != checked["fingerprint"]:
        print(f"data: {ddir} was prepared from other inputs or flags; preparing it again", flush=True)
        shutil.rmtree(ddir)  # a stale target_gold.jsonl would feed the oracle
    if os.path.exists(done):
        write_target_shards(ddir, checked["tok"])  # data prepared before the shards existed gets them now
        write_raw_data(cfg, ddir, checked["tok"])  # another --raw-arms needs another mix
        return
    if cfg.corpus:
        corpus = docs_in["corpus"]
        n_target = len(corpus) - (0 if cfg.val else max(1, len(corpus) // 20))  # else the last 5% are held out
        write_corpus(ddir, corpus, n_target)
    else:
        W.write(world_config(cfg), ddir, checked["tok"])
    if cfg.val:
        write_docs(os.path.join(ddir, "heldout.jsonl"), docs_in["val"])
    if cfg.teacher_latents:
        write_docs(os.path.join(ddir, "warm.jsonl"), docs_in["teacher_latents"])
        write_docs(os.path.join(ddir, "warm_inline.jsonl"), map(inline_latents, docs_in["teacher_latents"]))
    write_target_shards(ddir, checked["tok"])
    write_raw_data(cfg, ddir, checked["tok"])
    write_json(done, {"corpus": cfg.corpus or "built-in world", "fingerprint": checked["fingerprint"]})


def write_corpus(ddir, corpus, n_target):
    """One streaming pass over the checked --corpus (Docs): its first n_target documents to target.jsonl with
    their latents stripped, and as they are to target_gold.jsonl when one of them holds a latent (the check pass
    knows which document first does); the rest to heldout.jsonl. Each file atomic (atomic_open)."""
    p = lambda name: os.path.join(ddir, name + ".jsonl")
    gold = corpus.latent is not None and corpus.latent < n_target
    with contextlib.ExitStack() as files:
        target = files.enter_context(atomic_open(p("target")))
        gold = gold and files.enter_context(atomic_open(p("target_gold")))
        heldout = n_target < len(corpus) and files.enter_context(atomic_open(p("heldout")))
        n = 0
        for n, doc in enumerate(corpus, 1):
            if n > len(corpus):
                break
            if n > n_target:
                heldout.write(doc_line(doc))
                continue
            target.write(doc_line({"id": doc["id"], "chunks": [{"suffix": c["suffix"], "latent": None}
                                                               for c in doc["chunks"]]}))
            if gold:
                gold.write(doc_line(doc))
        if n != len(corpus):  # the held-out split was counted on the file as it was checked
            raise ValueError(f"{corpus.path} changed while out/data was prepared: {n} documents, "
                             f"{len(corpus)} when checked (--corpus)")


def write_target_shards(ddir, tok):
    """out/data/target/ (and target_gold/ when the corpus has teacher latents): the JSONL as token shards
    (data/shards.py, layout.encode_doc's ids: the same tokens as the JSONL), streamed one document at a time.
    The E-step reads its documents from target/; the raw baselines and the oracle train on them. Each is written
    in a temporary directory and moved in (the manifest last), so a kill leaves none half-written."""
    for name in ("target", "target_gold"):
        path = os.path.join(ddir, name)
        if os.path.exists(path + ".jsonl") and not is_shard_dir(path):
            write_shards(path, (encode_doc(tok, d) for d in iter_docs(path + ".jsonl")), tok)


def raw_data(ddir, arm, replay):
    """The --data directory a raw arm trains on: target/ (the target corpus), raw_inline/ (the target and the
    warm set with its latents inline: the arms inline and pipeline), each +replay with _replay."""
    name = "raw_inline" if arm in ("inline", "pipeline") else "target"
    return os.path.join(ddir, name + ("_replay" if replay else ""))


def raw_docs(ddir, inline, replay, seed):
    """One raw arm's training documents: target.jsonl, then warm_inline.jsonl (inline), then (replay) as many
    base.jsonl documents as those, in an order seeded by `seed` (cycled, with fresh ids, when the base has fewer).
    The training stream shuffles documents every epoch, so the order here is only what the draw picks."""
    p = lambda name: os.path.join(ddir, name + ".jsonl")
    if inline and not os.path.exists(p("warm_inline")):
        raise ValueError(f"{p('warm_inline')} is missing: {ddir} was prepared without the warm set as raw text; "
                         "delete it to prepare it again (--out)")
    n = 0
    for name in ("target", "warm_inline")[:1 + inline]:
        for doc in iter_docs(p(name)):
            n += 1
            yield doc
    if replay:
        base = read_docs(p("base"))
        order = random.Random(f"{seed}/replay").sample(range(len(base)), len(base))
        for i in range(n):
            doc = base[order[i % len(base)]]
            yield doc if i < len(base) else {**doc, "id": f"{doc['id']}/{i // len(base)}"}


def write_raw_data(cfg, ddir, tok):
    """The token shards of every mix --raw-arms trains on beside target/ (raw_data), each written once, in a
    temporary directory moved into place (write_shards)."""
    for arm, replay in raw_arms(cfg):
        path = raw_data(ddir, arm, replay)
        if not is_shard_dir(path):
            inline = os.path.basename(path).startswith("raw_inline")
            write_shards(path, (encode_doc(tok, d) for d in raw_docs(ddir, inline, replay, cfg.seed)), tok)


def read_data(cfg, checked, ddir):
    """What every rank reads back from out/data: target (memmapped shards, data/shards.Shards: nothing is read
    until a document is asked for), warm, heldout, gold (the path of target_gold.jsonl, read document by
    document where needed; None without teacher latents), questions and dev_questions (--questions and
    --dev-questions, else the world's test and dev splits) and the training phases' --data paths (the target
    corpus and its teacher latents as shards)."""
    p = lambda name: os.path.join(ddir, name)
    data = {name: read_docs(p(f"{name}.jsonl")) for name in ("warm", "heldout")}
    data["target"] = open_shards(p("target"))
    data["gold"] = p("target_gold.jsonl") if os.path.exists(p("target_gold.jsonl")) else None
    for name in ("questions", "dev_questions"):
        data[name] = checked[name] if getattr(cfg, name) else Q.load_prepared(ddir, name)
    data["paths"] = {**{name: p(f"{name}.jsonl") for name in ("base", "warm")},  # train.py --data: JSONL or shards
                     **{name: p(name) for name in ("target", "target_gold")},
                     **{raw_key(arm, r): raw_data(ddir, arm, r) for arm, r in raw_arms(cfg)}}
    return data
