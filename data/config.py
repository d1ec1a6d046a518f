"""em.py's configuration: every flag with its help and --help group (EMConfig), the --quick preset, the command
line parsed into an EMConfig with every flag checked (the rules: data/rundir.flag_errors, arg_errors, and
train.py's on the configuration of every phase, train_config), and what the flags make of a run's budgets: the
steps of every phase from epochs of its corpus, the one learning-rate schedule, and the raw baselines' data and
steps (raw_arm). No torch at import: train_config imports train.py when it runs."""
import argparse
import itertools
import math
import os
from dataclasses import asdict, dataclass

from data import rundir as D
from data.cli import HelpFormatter, add_flags, opt, parser_error
from data.layout import key_int
from data.loader import Rows, open_corpus

EM_USAGE = """BoLT by EM (Ruan et al. 2025, "Reasoning to Learn from Latent Thoughts"); the method: em.py's docstring.

    python em.py --iters 3                                 # the built-in world on CPU, baselines and report
    torchrun --standalone --nproc_per_node=N em.py ...     # E-step sharded over ranks, M-steps with DDP
    python em.py --eval --ckpt DIR [--questions Q.jsonl]   # evaluate any checkpoint, raw or latent
    python em.py --iters 3 --seeds 0,1,2 --out DIR         # one run per seed in DIR/seed{S}, combined report"""
RUN, INPUTS, MODEL, BUDGETS, ESTEP, EVAL, WORLD = "run", "inputs", "model (from scratch)", "budgets", "E-step", \
    "evaluation", "the built-in world"


@dataclass
class EMConfig:
    iters: int = opt(3, "EM iterations", group=RUN)
    seed: int = opt(0, "seed of the world, inits, data order and E-step draws", group=RUN)
    seeds: str = opt("", "'0,1,2': a run per seed in OUT/seed{S}, one report", group=RUN, metavar="LIST")
    out: str = opt("out/em", "run directory; the same command resumes it", group=RUN, metavar="DIR")
    quick: bool = opt(False, "tiny world and model: a one-minute smoke test", group=RUN)
    no_baselines: bool = opt(False, "skip the base and raw arms (and the oracle)", group=RUN)
    # the default, one M-step's steps, costs what a FLOP-matched arm does and sees the warm set's walks too
    raw_arms: str = opt("inline", "raw baselines (data/config.raw_arm): a comma list of " + ", ".join(D.RAW_ARMS)
                        + ", each optionally +replay (mixed 1:1 with the built-in world's base corpus); empty: none",
                        group=RUN, metavar="LIST")
    oracle: bool = opt(False, "also train the oracle (gold walks; built-in worlds)", group=RUN)
    corpus: str = opt("", "target corpus ({'text'} or chunks); default: the world", group=INPUTS, metavar="JSONL")
    teacher_latents: str = opt("", "warm-start set with latents; default: the world's",
                               group=INPUTS, metavar="JSONL")
    val: str = opt("", "held-out documents; default: the world's", group=INPUTS, metavar="JSONL")
    init: str = opt("", "base weights (ours or a HF dir); no pretraining", group=INPUTS, metavar="DIR")
    tokenizer: str = opt("bytes", "bytes | gpt2 | a HF tokenizer dir", group=MODEL, metavar="NAME")
    bpe_dir: str = opt("", "dir with GPT-2's vocab.bpe + encoder.json", group=MODEL, metavar="DIR")
    n_layer: int = opt(4, "layers", group=MODEL)
    n_head: int = opt(4, "attention heads", group=MODEL)
    n_embd: int = opt(128, "width", group=MODEL)
    block_size: int = opt(256, "window of every phase", group=MODEL)
    batch_size: int = opt(8, "rows per optimizer step", group=BUDGETS)
    lr: float = opt(1e-3, "peak lr of every phase after the base", group=BUDGETS)
    base_lr: float = opt(2e-3, "peak lr of base pretraining", group=BUDGETS)
    base_steps: int = opt(2000, "base pretraining steps", group=BUDGETS)
    m_epochs: float = opt(20.0, "epochs of every M-step", group=BUDGETS)
    warm_steps: int = opt(2000, "warm-start steps, whatever the warm set's size (README: departures)",
                          group=BUDGETS)
    m_steps: int = opt(0, "fixed steps, not --m-epochs", group=BUDGETS)
    k: int = opt(4, "Monte-Carlo latents per chunk", group=ESTEP)
    estep: str = opt("sequential", "chunk i's context: earlier chunks with their chosen latents, or raw (BOLT.md)",
                     ("sequential", "paper"), group=ESTEP)
    max_latent: int = opt(32, "tokens per latent, EoL included", group=ESTEP)
    temperature: float = opt(1.0, "0 = greedy, only with --k 1", group=ESTEP)
    top_k: int = opt(0, "0 = off", group=ESTEP)
    top_p: float = opt(1.0, "1 = off", group=ESTEP)
    gen_batch: int = opt(256, "rows per sampling / scoring batch", group=ESTEP)
    eval_ks: str = opt("1,2,4", "K of the IW-ELBO_K bounds", group=EVAL, metavar="LIST")
    questions: str = opt("", "test questions JSONL; default: the world's", group=EVAL, metavar="JSONL")
    dev_questions: str = opt("", "dev questions JSONL, to choose a recipe on; default: the world's", group=EVAL,
                             metavar="JSONL")
    answer_regex: str = opt("", "overrides each question's answer rule", group=EVAL, metavar="RE")
    world_target: int = opt(500, "target documents", group=WORLD)
    world_warm: int = opt(400, "warm-start documents", group=WORLD)
    world_heldout: int = opt(100, "held-out documents", group=WORLD)
    world_questions: int = opt(500, "test questions", group=WORLD)
    world_dev: int = opt(500, "dev questions (disjoint from the test ones)", group=WORLD)
    world_shape: str = opt("prose", "prose: problems in words over chunks; compact: one problem, two chunks",
                           ("prose", "compact"), group=WORLD)


QUICK = dict(n_layer=2, n_head=2, n_embd=64, block_size=128, batch_size=16, base_steps=150, warm_steps=27,
             m_epochs=8, world_target=120, world_warm=60, world_heldout=32, world_questions=32, world_dev=32,
             world_shape="compact", max_latent=32)


def build_parser():
    """em.py's flags, grouped as EMConfig's fields are, plus --eval / --ckpt."""
    usage = "%(prog)s [--quick] [--iters N] [--out DIR] [flags]  |  %(prog)s --eval --ckpt DIR"
    ap = argparse.ArgumentParser(prog="em.py", usage=usage, description=EM_USAGE, formatter_class=HelpFormatter)
    ap.error = parser_error  # one line via main(), not argparse's usage block
    groups = {}
    add_flags(ap, EMConfig, given_only=True, groups=groups)
    groups[EVAL].add_argument("--eval", action="store_true", help="evaluate --ckpt only, then stop")
    groups[EVAL].add_argument("--ckpt", default="", metavar="DIR", help="the checkpoint --eval evaluates")
    return ap


def parse_args(argv=None):
    """Flags -> (EMConfig, args); raises ValueError (argparse's own errors included) with every problem, the
    flags of every phase em.py will run checked (data/rundir.flag_errors, then train.py's word: phase_errors)."""
    args = build_parser().parse_args(argv)
    given = {k: v for k, v in vars(args).items() if k in asdict(EMConfig()) and v is not None and v is not False}
    cfg = EMConfig(**{**(QUICK if given.get("quick") else {}), **given})  # 0 is a value, None is "not given"
    errors = D.flag_errors(cfg, args.eval, args.ckpt, phase_errors) + D.arg_errors(cfg, given, args.eval, args.ckpt)
    if errors:
        raise ValueError("; ".join(errors))
    return cfg, args


def check_inputs(cfg, ckpt="", eval_only=False):
    """data/rundir.check_inputs with train.py's word on every phase: one validation pass before any work."""
    return D.check_inputs(cfg, ckpt, eval_only, phase_errors)


# ----------------------------------------------------------------------------- the train.py config of a phase

# the model fields a phase takes from EMConfig as they are (the rest are derived in train_config)
MODEL_FIELDS = ("tokenizer", "bpe_dir", "n_layer", "n_head", "n_embd", "block_size")


def train_config(cfg, name, data_path, layout, init, steps, lr=None, world=None):
    """The train.py configuration of one phase (check_inputs checks these before any phase runs)."""
    from common import rank_world  # torch: only when a phase is configured
    from train import TrainConfig
    world = world or rank_world()[1]
    return TrainConfig(data=data_path, layout=layout, out=os.path.join(cfg.out, name, "model"),
                       init=init or "scratch", **{k: getattr(cfg, k) for k in MODEL_FIELDS}, max_steps=steps,
                       batch_size=cfg.batch_size // world, total_batch_tokens=cfg.batch_size * cfg.block_size,
                       seed=key_int(cfg.seed, name) % 2**31, resume=True, **schedule(lr or cfg.lr, steps))


def phase_errors(cfg):
    """What train.py would refuse in the M-step's config, which carries every flag the phases share (a safety
    net under rundir.flag_errors, which checks the base's and warm start's own steps and rates)."""
    tc = train_config(cfg, "iter1", "", "random", "", cfg.m_steps or 1, world=int(os.environ.get("WORLD_SIZE", "1")))
    return [f"train.py would refuse the M-step: {e}" for e in tc.errors()]


# ----------------------------------------------------------------------------- budgets

def schedule(lr, steps):
    """The one learning-rate schedule of every phase (base, warm, M-steps, baselines, oracle), so each M-step
    gets the same budget: warmup over the first 5% of the steps (at least 1), then cosine decay from lr to
    lr / 10; a checkpoint every quarter of the steps (never closer than 50 steps apart) and a progress line
    every fifth."""
    return dict(lr=lr, min_lr=lr / 10, warmup_steps=max(1, steps // 20), ckpt_every=max(50, steps // 4),
                log_every=max(1, steps // 5))


def n_rows(tok, cfg, path, layout):
    """Document-aligned training rows in one epoch of a corpus (data/loader.Rows' plan, from lengths alone)."""
    return len(Rows(tok, open_corpus(tok, path), layout, key_int(cfg.seed, "rows") % 2**31, cfg.block_size).plan(0))


def phase_steps(cfg, tok, steps, epochs, path):
    """A phase's optimizer steps: `steps` if > 0, else `epochs` of its corpus (rows / --batch-size)."""
    return steps or max(1, math.ceil(epochs * n_rows(tok, cfg, path, "random") / cfg.batch_size))


def latent_path(cfg):
    """Iteration 1's E-step latents (the target corpus with latents), which set every M-step's budget (the raw
    target corpus without iterations)."""
    return os.path.join(cfg.out, "iter1", "latents") if cfg.iters else os.path.join(cfg.out, "data", "target")


def m_steps(cfg, tok):
    """Every M-step's steps (the same each iteration): --m-steps, else --m-epochs of iteration 1's corpus."""
    return phase_steps(cfg, tok, cfg.m_steps, cfg.m_epochs, latent_path(cfg))


def raw_arm(cfg, tok, data, arm, replay, base, warm):
    """One raw baseline of --raw-arms -> (name, label, train.py --data, init, steps); every one trains in the
    raw layout and costs the steps given:
      tokens    the target from base, as many epochs over its documents as an M-step makes over the latents
      flops     the target from base, one M-step's steps (m_steps)
      inline    (a) the target plus the warm set with the teacher's walks inline in the base text's format
                (data/world.py warm_inline), from base, m_steps: the worked examples the latent arms see
      warm      (b) the warm-start model continued on the target, m_steps
      pipeline  (c) inline's data, from base, for as many training tokens as the warm start and every M-step
                trained (pipeline_tokens; the E-step's sampling is not training and is not counted)
    +replay: the same data mixed 1:1 by documents with the base corpus (data/rundir.raw_docs); the token-matched
    arm then makes its epochs over the mix."""
    name = D.raw_key(arm, replay)
    path, rep, steps = data["paths"][name], ", base replay" if replay else "", m_steps(cfg, tok)
    if arm == "tokens":
        epochs = steps * cfg.batch_size / n_rows(tok, cfg, latent_path(cfg), "random")
        n = max(1, round(epochs * n_rows(tok, cfg, path, "raw") / cfg.batch_size))
        both = " and FLOP" if n == steps else ""  # document-aligned rows: a raw document takes a row as its twin
        return name, f"raw, token{both}-matched{rep} ({epochs:.1f} epochs)", path, base, n
    if arm == "pipeline":
        n = steps_for_tokens(tok, cfg, pipeline_phase(cfg, name), path, "raw", pipeline_tokens(cfg, tok, data))
        return name, f"raw + warm walks inline, pipeline tokens{rep} ({n} steps)", path, base, n
    label = {"flops": "raw, FLOP-matched", "inline": "raw + warm walks inline", "warm": "warm start, then raw"}[arm]
    return name, f"{label}{rep} (one M-step)", path, warm if arm == "warm" else base, steps


def pipeline_phase(cfg, name):
    """The pipeline arm's phase directory: its steps follow --iters, which a resumed run may change."""
    return f"{name}_iters{cfg.iters}"


def pipeline_tokens(cfg, tok, data):
    """Tokens the pipeline trains after base: the warm start's steps and every M-step's, each over its own
    corpus (the warm set; iteration t's latents) as train.py's rows lay it out."""
    return phase_tokens(tok, cfg, "warm", data["paths"]["warm"], "random", cfg.warm_steps) + sum(
        phase_tokens(tok, cfg, f"iter{t}", os.path.join(cfg.out, f"iter{t}", "latents"), "random", m_steps(cfg, tok))
        for t in range(1, cfg.iters + 1))


def phase_rows(tok, cfg, name, path, layout):
    """The tokens (targets) of each row phase `name` trains on, in training order: data/loader.Rows with the phase's
    seed (train_config), planned from lengths alone; endless, --batch-size rows to a step."""
    rows = Rows(tok, open_corpus(tok, path), layout, key_int(cfg.seed, name) % 2**31, cfg.block_size)
    for e in itertools.count():
        for row in rows.plan(e):
            yield sum(end - start - 1 for _, start, end in row)


def phase_tokens(tok, cfg, name, path, layout, steps):
    """Tokens phase `name` trains in `steps` optimizer steps."""
    return sum(itertools.islice(phase_rows(tok, cfg, name, path, layout), steps * cfg.batch_size))


def steps_for_tokens(tok, cfg, name, path, layout, tokens):
    """The step count (>= 1) whose training tokens in phase `name` come nearest `tokens`: within half a step's."""
    rows, done, steps = phase_rows(tok, cfg, name, path, layout), 0, 0
    while True:
        step = sum(itertools.islice(rows, cfg.batch_size))
        if done + step / 2 >= tokens:
            return max(1, steps)
        done, steps = done + step, steps + 1
