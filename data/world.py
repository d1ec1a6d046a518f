"""The built-in world: a CPU-sized stand-in for the paper's setting (web text as compressed thought).

The knowledge is a fixed random binary operation `*` on the digits 0..n-1 (each row a permutation, so every
fact is learnable and none is guessable). Its parts mirror the paper's:
  base      raw pretraining text, many single facts "3*7=2" (what TinyLlama knows before BoLT)
  target    the data-constrained corpus of *compressed* documents: problems written the way papers write them,
            "Q: 3*7*5*1" then "A: 4", the derivation left out. Its gold derivations live in a separate file
            (target_gold.jsonl) that only the oracle baseline and the diagnostics read, never the E-step.
  warm      a small disjoint set whose latents come from the built-in teacher (the gold derivation
            "3*7=2;2*5=9;9*1=4", playing GPT-4o-mini), in the authors' chunks format
  heldout   held-out documents for raw NLL / IW-ELBO, and held-out questions with `check_answer`
A document holds a few problems; each problem is two chunks: the question (its latent is empty: nothing to
think before reading a question) and the answer (its latent is the derivation). Operand tuples never repeat
across target, warm, held-out documents and questions. Everything is deterministic in the seed.
"""
import argparse
import json
import os
import random
import re
from dataclasses import asdict, dataclass

from data.corpus import write_docs


@dataclass
class WorldConfig:
    seed: int = 0
    digits: int = 10  # the operation's domain 0..digits-1
    operands: int = 4  # operands per problem: operands-1 table lookups in the derivation
    problems_per_doc: int = 2
    n_base: int = 3000  # base pretraining documents
    facts_per_base_doc: int = 12
    n_target: int = 1000  # target documents (latent-free)
    n_warm: int = 200  # warm-start documents with teacher latents
    n_heldout: int = 100  # held-out documents (NLL / IW-ELBO)
    n_questions: int = 1000  # held-out questions (accuracy)


def make_table(digits, rng):
    """table[a][b] = a*b; each row a random permutation of the digits."""
    return [rng.sample(range(digits), digits) for _ in range(digits)]


def derivation(table, ops):
    """Gold latent for a problem: the chain of lookups, and the result."""
    steps, acc = [], ops[0]
    for b in ops[1:]:
        r = table[acc][b]
        steps.append(f"{acc}*{b}={r}")
        acc = r
    return ";".join(steps), acc


def question_text(ops):
    return "Q: " + "*".join(map(str, ops)) + "\n"


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


def _tuples(cfg, rng, n):
    """n distinct operand tuples, in a seeded order."""
    space = cfg.digits ** cfg.operands
    if n > space:
        raise ValueError(f"the world needs {n} distinct problems but only {space} exist; "
                         f"raise --operands or --digits, or shrink the corpora")
    picks = rng.sample(range(space), n)
    return [tuple((p // cfg.digits ** j) % cfg.digits for j in range(cfg.operands)) for p in picks]


def build(cfg):
    """-> dict of name -> list of docs / records (see the module docstring)."""
    rng = random.Random(cfg.seed)
    table = make_table(cfg.digits, rng)
    ppd = cfg.problems_per_doc
    tuples = _tuples(cfg, rng, (cfg.n_target + cfg.n_warm + cfg.n_heldout) * ppd + cfg.n_questions)
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
    world["questions"] = [{"question": question_text(ops), "answer": derivation(table, ops)[1],
                           "gold": derivation(table, ops)[0]} for ops in cut(cfg.n_questions)]
    base = []
    for d in range(cfg.n_base):
        facts = "".join(f"{a}*{b}={table[a][b]}\n" for a, b in
                        ((rng.randrange(cfg.digits), rng.randrange(cfg.digits)) for _ in range(cfg.facts_per_base_doc)))
        base.append({"id": f"base-{d}", "chunks": [{"suffix": facts, "latent": None}]})
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
