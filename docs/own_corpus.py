"""A corpus of another shape than the built-in worlds, for em.py --corpus --teacher-latents --questions.

    python docs/own_corpus.py --world out/em/data/world.json --out out/own     # then (README, "Results"):
    python em.py --corpus out/own/target.jsonl --val out/own/heldout.jsonl --teacher-latents out/own/warm.jsonl \
        --questions out/own/questions.jsonl --dev-questions out/own/dev_questions.jsonl \
        --init out/em/base/model/ckpt --out out/own_em
    python docs/own_corpus.py --picks out/own_em --out out/own               # the E-step's picks against gold

The same knowledge as a built-in world (its world.json: the operator table, the facts its base text states
for sure, the decoys of the others), so a base model pretrained on that world knows what it can know; but
documents written as lab notes, not as the worlds' problems: 1 to 4 readings per note (the worlds: always 2),
each "Register R7 holds 7. The machine runs c and i, then q and x." and, opening the next paragraph, a reading
that states only the result, "The display read 5.", the next statement going on in that paragraph (the worlds
give a statement and its result a paragraph each), with lab-note sentences between them a third of the time
and a closing remark half the time. em.py chunks the target text itself; the warm-start set is chunked the same
way here, with the teacher's walk (the prose world's imperfect teacher, which reads the result it explains) on
the chunk that holds each reading. Questions are a register's statement answered by a reading, with "chunks" as
the chunker splits them, and the base text's format for a raw model asked to reason ("<statement> Work:").
Problems the base text holds are left out.
"""
import argparse
import json
import os
import random
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from data import world as W  # noqa: E402
from data.corpus import chunk_text, write_atomic, write_docs  # noqa: E402

OPEN = ("Register R{} holds {}. ", "We load {} into register R{}. ")
RUN = ("The machine runs {}. ", "It steps through {}. ")  # the operators, "c and i, then q and x" / "c, i, q and x"
READ = "The display read {}. "
READ_RE = r"The display read (\d)\."
NOTES = ("The lab was quiet. ", "Nobody touched the dial. ", "We wrote it down twice. ", "Coffee was cold. ")
CLOSE = ("End of notes. ", "That was the last one today. ")


def note_statement(problem, rng):
    start, ops = problem
    opening = rng.choice(OPEN)
    reg = rng.randrange(1, 10)
    head = opening.format(reg, start) if opening.startswith("Register") else opening.format(start, reg)
    run = rng.choice(RUN)
    if run.startswith("The machine") and len(ops) % 2 == 0:  # in pairs
        pairs = [f"{a} and {b}" for a, b in zip(ops[::2], ops[1::2])]
        return (head + run.format(", then ".join(pairs))).rstrip(" ")
    return (head + run.format(", ".join(ops[:-1]) + " and " + ops[-1] if len(ops) > 1 else ops[0])).rstrip(" ")


def note(problems, results, rng):
    """-> (text, [(statement start, offset of the result digit)])."""
    text, spans = "", []
    for k, (p, r) in enumerate(zip(problems, results)):
        if k and rng.random() < 1 / 3:
            text += rng.choice(NOTES)
        begin = len(text)
        text += note_statement(p, rng) + W.PARA + READ.format(r)
        spans.append((begin, len(text) - 3))
    if rng.random() < 0.5:
        text += rng.choice(CLOSE)
    return text, spans


def build(meta, n_target, n_warm, n_questions, n_dev, n_heldout, budget, seed, base_problems):
    cfg = W.WorldConfig(**meta["config"])
    table = meta["table"]
    decoys = {(k[0], int(k[1:])): tuple(v) for k, v in meta["decoys"].items()}  # "c7": [2, 9]
    rng = random.Random(f"own/{seed}")
    seen, problems = set(base_problems), []

    def draw():
        while True:
            p = W.random_problem(cfg, rng)
            if p not in seen:
                seen.add(p)
                return p

    def docs(name, n, teacher=None):
        out, texts = [], []
        for d in range(n):
            ps = [draw() for _ in range(rng.randint(1, 4))]
            text, spans = note(ps, [W.walk(table, *p)[1] for p in ps], rng)
            walks = W.teacher_walks(cfg, table, decoys, teacher, ps, read_result=True) if teacher else None
            out.append(W.prose_doc(f"{name}-{d}", text, spans, walks, None, budget))
            texts.append({"id": f"{name}-{d}", "text": text, "walks": [W.walk(table, *p)[0] for p in ps]})
        return out, texts

    def ask():
        p = draw()
        st = note_statement(p, rng) + W.PARA
        z, end = W.walk(table, *p)
        return {"question": st, "chunks": chunk_text(st, None, budget), "answer": end, "gold": z,
                "answer_regex": READ_RE, "prompt": st + "Work:", "prompt_regex": W.PROSE_WALK_RE.pattern,
                "prompt_stop": "."}

    questions, dev = [ask() for _ in range(n_questions)], [ask() for _ in range(n_dev)]  # every problem drawn once
    _, target = docs("note", n_target)
    _, heldout = docs("heldout", n_heldout)
    warm, _ = docs("warm", n_warm, random.Random(f"own/{seed}/teacher"))
    walks = [{"id": t["id"], "walks": t.pop("walks")} for t in target]  # the gold walks, for --picks
    for t in heldout:
        del t["walks"]
    return {"target": target, "heldout": heldout, "questions": questions, "dev_questions": dev,
            "target_walks": walks}, warm


def base_problems(path):
    """The (start, ops) of every walk worked in a base text (the world's base.jsonl), so none is reused."""
    out = set()
    with open(path) as f:
        for line in f:
            for doc in [json.loads(line)]:
                for c in doc["chunks"]:
                    for z in re.findall(r"Work: (\d(?:[a-z]\d)+)\.", c["suffix"]):
                        out.add((int(z[0]), z[1::2]))
    return out


def picks(run, corpus):
    """The E-step's chosen latents of every iteration of `run` against the target's gold walks (corpus/
    target_walks.jsonl), by the problem's place in its note: the latent on the chunk holding a problem's reading
    is its thought. -> {phase: {place: (n, whole walk right, start digit right, operators right)}}."""
    with open(os.path.join(corpus, "target_walks.jsonl")) as f:
        gold = {r["id"]: r["walks"] for r in map(json.loads, f)}
    out, t = {}, 1
    while os.path.exists(path := os.path.join(run, f"iter{t}", "latents.jsonl")):
        counts = {}
        with open(path) as f:
            for doc in map(json.loads, f):
                thoughts = [c["latent"] for c in doc["chunks"] if re.search(READ_RE, c["suffix"])]
                for k, (z, g) in enumerate(zip(thoughts, gold[doc["id"].split("#")[0]])):
                    c = counts.setdefault(min(k, 2), [0, 0, 0, 0])
                    for i, hit in enumerate((True, z == g, z[:1] == g[:1], z[1::2] == g[1::2])):
                        c[i] += hit
        out[f"iter{t}"], t = counts, t + 1
    if not out:
        raise ValueError(f"{run}: no iter1/latents.jsonl (not an em.py run with an E-step done) (--picks)")
    return out


def print_picks(table):
    print("| E-step | place in the note | problems | whole walk right | start digit right | operators right |")
    print("|---|---|---|---|---|---|")
    for phase, counts in table.items():
        for k, (n, *hits) in sorted(counts.items()):
            print(f"| {phase} | {('first', 'second', 'third or later')[k]} | {n} | "
                  + " | ".join(f"{h / n:.1%}" for h in hits) + " |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", help="a built-in world's world.json (em.py writes out/em/data/world.json)")
    ap.add_argument("--picks", metavar="RUN", help="instead: a finished em.py run on the corpus in --out; print its "
                    "E-step picks against the target's gold walks, by the problem's place in its note")
    ap.add_argument("--out", required=True, help="output directory: target.jsonl, heldout.jsonl, warm.jsonl, "
                    "questions.jsonl, dev_questions.jsonl, target_walks.jsonl (the target's gold walks)")
    ap.add_argument("--n-target", type=int, default=500, help="lab-note documents without latents")
    ap.add_argument("--n-warm", type=int, default=200, help="warm-start notes with the teacher's walks")
    ap.add_argument("--n-heldout", type=int, default=100, help="held-out notes (em.py --val)")
    ap.add_argument("--n-questions", type=int, default=500, help="test questions")
    ap.add_argument("--n-dev", type=int, default=500, help="dev questions (em.py --dev-questions), none a test one")
    ap.add_argument("--chunk-tokens", type=int, default=64,
                    help="chunk budget of the warm set (em.py's: block_size // 4)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the notes' problems, wording and teacher")
    a = ap.parse_args(argv)
    try:
        if a.picks:
            return print_picks(picks(a.picks, a.out))
        if not a.world:
            raise ValueError("--world is required to write a corpus")
        with open(a.world) as f:
            meta = json.load(f)
        missing = [k for k in ("config", "table", "decoys") if not isinstance(meta, dict) or k not in meta]
        if missing:
            raise ValueError(f"{a.world}: not a built-in world's world.json (no {', '.join(missing)}) (--world)")
        base = base_problems(os.path.join(os.path.dirname(a.world), "base.jsonl"))
        sizes = (a.n_target, a.n_warm, a.n_heldout, a.n_questions, a.n_dev, a.chunk_tokens)
        if min(sizes) < 1:
            raise ValueError("--n-target, --n-warm, --n-heldout, --n-questions, --n-dev and --chunk-tokens "
                             "must be >= 1")
        files, warm = build(meta, a.n_target, a.n_warm, a.n_questions, a.n_dev, a.n_heldout, a.chunk_tokens, a.seed,
                            base)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    os.makedirs(a.out, exist_ok=True)
    for name, rows in files.items():
        write_atomic(os.path.join(a.out, name + ".jsonl"), "".join(json.dumps(r) + "\n" for r in rows))
    write_docs(os.path.join(a.out, "warm.jsonl"), warm)
    print(f"wrote {a.out}: " + ", ".join(f"{len(rows)} {name}" for name, rows in files.items())
          + f", {len(warm)} warm-start notes")


if __name__ == "__main__":
    main()
