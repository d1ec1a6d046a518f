"""The built-in world: a CPU-sized stand-in for the paper's setting (web text as compressed thought).

The knowledge is two fixed random permutations of the digits, f and g. A walk writes each step as a label
letter and the result: step j is the j-th letter of the alphabet, lowercase for f and uppercase for g, so
"7a2B3c8" says f(7) = 2, g(2) = 3, f(3) = 8. Its parts mirror the paper's:
  base      raw pretraining text: random walks "7a2B3c8D1..." (what TinyLlama knows before BoLT: every single
            step, never the answer to a long question)
  target    the data-constrained corpus of *compressed* documents: problems written the way papers write them,
            "Q: 7 aBcDEfGhI" then "A: 3", the walk left out. Its gold derivations live in a separate file
            (target_gold.jsonl) that only the oracle baseline and the diagnostics read, never the E-step.
  warm      a small disjoint set whose latents come from the built-in teacher (the gold walk
            "7a2B3c8...", playing GPT-4o-mini), in the authors' chunks format
  heldout   held-out documents for raw NLL / IW-ELBO, and held-out questions with `check_answer`
A document is one problem (problems_per_doc), two chunks: the question (its latent is empty: nothing to
think before reading a question) and the answer (its latent is the walk). The answer is a composition of
`ops` random permutations: hopeless to learn from compressed text alone, easy to write out step by step with
the base model's knowledge. Problems never repeat across target, warm, held-out documents and questions.
Two designs failed before this one. A random binary table ("3*7=2") has facts with uniform marginals, and the
small base model did not learn them in 3,000 steps (an XOR-like plateau). Unlabelled operators ("Q: 7 fgf")
were learned as facts, but no model, not even the oracle, learned to copy them into the walk in order. With
a label per step, copying is an induction pattern (find the label in the question, copy its case): the oracle
then writes the gold walk for 100% of held-out questions after 1,000 steps.
One problem per document because the E-step and the IW-ELBO condition chunk i on the *raw* text of the
previous chunks (BOLT.md), a context the M-step models never see in training (there every chunk starts with
SoL). With two problems per document the second one's markers cost ~8 nats more, its posterior samples were
the gold walk 10-40% of the time against 50-100% for the first, and the IW-ELBO got worse as accuracy rose.
Its known limit (README, Results): the whole skill is one reusable behaviour that forms abruptly, so a warm
start either already answers everything (>= 1,000 steps) or has nothing for EM to start from; at the default
800 steps seed 0 bootstraps (57.5% -> 100%) and seed 1 does not. A world with graded difficulty (knowledge
spread over many items a small teacher set cannot cover) is the next step.
"""
import argparse
import json
import os
import random
import re
from dataclasses import asdict, dataclass

from data.corpus import write_docs

OPS = "fg"


@dataclass
class WorldConfig:
    seed: int = 0
    digits: int = 10  # the permutations act on 0..digits-1
    ops: int = 9  # operators per question: the length of the hidden walk
    problems_per_doc: int = 1  # more: see the docstring
    n_base: int = 2000  # base pretraining documents
    walks_per_base_doc: int = 4
    n_target: int = 2000  # target documents (latent-free)
    n_warm: int = 800  # warm-start documents with teacher latents
    n_heldout: int = 200  # held-out documents (NLL / IW-ELBO)
    n_questions: int = 1000  # held-out questions (accuracy)


def make_table(digits, rng):
    """table[op][x] = op(x); each op a random permutation of the digits."""
    return [rng.sample(range(digits), digits) for _ in OPS]


def label(j, op):
    """Step j's operator as a letter: lowercase for f, uppercase for g."""
    return chr((97 if op == "f" else 65) + j)


def walk(table, start, ops):
    """The walk 'x a y B z ...' from start through ops (a string over OPS), and where it ends."""
    out, x = [str(start)], start
    for j, o in enumerate(ops):
        x = table[OPS.index(o)][x]
        out.append(f"{label(j, o)}{x}")
    return "".join(out), x


def derivation(table, problem):
    start, ops = problem
    return walk(table, start, ops)


def question_text(problem):
    return f"Q: {problem[0]} " + "".join(label(j, o) for j, o in enumerate(problem[1])) + "\n"


def answer_text(result):
    return f"A: {result}\n"


ANSWER_RE = re.compile(r"A: (\d+)")


def check_answer(text, answer):
    """True when the first 'A: <n>' in generated text states the right answer."""
    m = ANSWER_RE.search(text)
    return m is not None and m.group(1) == str(answer)


def problem_chunks(table, ops, with_latent):
    z, result = derivation(table, ops)
    return [{"suffix": question_text(ops), "latent": "" if with_latent else None},
            {"suffix": answer_text(result), "latent": z if with_latent else None}]


def _problems(cfg, rng, n):
    """n distinct problems (start digit, operator string), in a seeded order."""
    space = cfg.digits * len(OPS) ** cfg.ops
    if n > space:
        raise ValueError(f"the world needs {n} distinct problems but only {space} exist; "
                         f"raise --ops or --digits, or shrink the corpora")
    picks = rng.sample(range(space), n)
    return [(p % cfg.digits, "".join(OPS[(p // cfg.digits >> j) & 1] for j in range(cfg.ops))) for p in picks]


def build(cfg):
    """-> dict of name -> list of docs / records (see the module docstring)."""
    rng = random.Random(cfg.seed)
    table = make_table(cfg.digits, rng)
    ppd = cfg.problems_per_doc
    tuples = _problems(cfg, rng, (cfg.n_target + cfg.n_warm + cfg.n_heldout) * ppd + cfg.n_questions)
    cut = lambda n: [tuples.pop() for _ in range(n)]

    def docs(name, n, with_latent):
        out = []
        for d in range(n):
            chunks = [c for ops in cut(ppd) for c in problem_chunks(table, ops, with_latent)]
            out.append({"id": f"{name}-{d}", "chunks": chunks})
        return out

    target_gold = docs("target", cfg.n_target, True)
    target = [{"id": d["id"], "chunks": [{"suffix": c["suffix"], "latent": None} for c in d["chunks"]]}
              for d in target_gold]
    world = {"table": table, "target": target, "target_gold": target_gold,
             "warm": docs("warm", cfg.n_warm, True), "heldout": docs("heldout", cfg.n_heldout, True)}
    world["questions"] = [{"question": question_text(ops), "answer": end, "gold": z}
                          for ops in cut(cfg.n_questions) for z, end in [derivation(table, ops)]]
    base = []
    for d in range(cfg.n_base):  # walks of every length up to 2*ops, from random starts
        walks = [walk(table, rng.randrange(cfg.digits), "".join(rng.choice(OPS) for _ in range(rng.randint(1, min(2 * cfg.ops, 26)))))[0]
                 for _ in range(cfg.walks_per_base_doc)]
        base.append({"id": f"base-{d}", "chunks": [{"suffix": "".join(w + "\n" for w in walks), "latent": None}]})
    world["base"] = base
    return world


FILES = ("base", "target", "target_gold", "warm", "heldout")


def write(cfg, out):
    """Write the world under out/ (docs as chunked JSONL, questions.jsonl, world.json last = complete)."""
    os.makedirs(out, exist_ok=True)
    w = build(cfg)
    for name in FILES:
        write_docs(os.path.join(out, f"{name}.jsonl"), w[name])
    tmp = os.path.join(out, "questions.jsonl.tmp")
    with open(tmp, "w") as f:
        f.writelines(json.dumps(q) + "\n" for q in w["questions"])
    os.replace(tmp, os.path.join(out, "questions.jsonl"))
    meta = {"config": asdict(cfg), "table": w["table"], "counts": {k: len(w[k]) for k in (*FILES, "questions")}}
    with open(os.path.join(out, "world.json.tmp"), "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(os.path.join(out, "world.json.tmp"), os.path.join(out, "world.json"))
    return meta


def read_questions(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv=None):
    ap = argparse.ArgumentParser(description="Write the built-in table world (see data/world.py).")
    ap.add_argument("--out", default="out/world", help="output directory")
    for k, v in asdict(WorldConfig()).items():
        ap.add_argument("--" + k.replace("_", "-"), type=type(v), default=v)
    args = ap.parse_args(argv)
    cfg = WorldConfig(**{k: getattr(args, k) for k in asdict(WorldConfig())})
    meta = write(cfg, args.out)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in meta["counts"].items()))


if __name__ == "__main__":
    main()
