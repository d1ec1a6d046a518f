"""What a latent model writes on the test questions, read against the gold walks: why its accuracy is what it is.

    python docs/thoughts.py out/em                 # every latent phase of a run (warm, iter1, ...)
    python docs/thoughts.py out/em --show 5        # and the first 5 questions' thoughts and answers
    python docs/thoughts.py out/own_em --questions out/own/questions.jsonl     # a --corpus run

For each phase with an eval_questions.jsonl, over the test questions asked in latent mode, the last thought
(the one written before the chunk holding the answer) against the question's "gold" walk:
  thought = gold      the whole walk right (start digit, operators and every value)
  start right         its first character is the problem's start digit (the copy skill)
  operators right     its letters are the problem's operators in order
  answer follows      the answer is the thought's last character (the model reads its own thought)
  accuracy            the answer is the true result
Built-in prose questions carry their place in their document: each phase is also split by it.
A model can be right without a right thought (a guess, 1 in 10) and wrong with one (the answer does not follow).
Questions without "gold" (a corpus of your own without it) are skipped.
"""
import argparse
import json
import os
import sys


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def phase_stats(rows, questions, position=None):
    """rows: a phase's eval_questions.jsonl; questions: the test questions in order -> {measure: fraction}, n.
    position: only the questions standing there in their document (a prose question's "position": 0 first)."""
    counts, n = dict.fromkeys(("thought = gold", "start right", "operators right", "answer follows", "accuracy"), 0), 0
    for r in rows:
        if r.get("split", "test") != "test" or r.get("mode") != "latent" or "gold" not in questions[r["q"]]:
            continue
        if position is not None and questions[r["q"]].get("position") != position:
            continue
        gold, z = questions[r["q"]]["gold"], (r["thoughts"] or [""])[-1]
        n += 1
        counts["thought = gold"] += z == gold
        counts["start right"] += z[:1] == gold[:1]
        counts["operators right"] += z[1::2] == gold[1::2]
        counts["answer follows"] += bool(z) and r["extracted"] == z[-1]
        counts["accuracy"] += bool(r["correct"])
    return {k: v / max(n, 1) for k, v in counts.items()}, n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="an em.py --out directory")
    ap.add_argument("--questions", default="", help="the run's test questions JSONL (default: "
                    "RUN/data/questions.jsonl, the built-in world's; a --corpus run's: what em.py --questions got)")
    ap.add_argument("--show", type=int, default=0, help="print this many questions' thoughts and answers per phase")
    a = ap.parse_args(argv)
    qpath = a.questions or os.path.join(a.run, "data", "questions.jsonl")
    if not os.path.isfile(qpath) or a.show < 0:
        print(f"error: {qpath} is missing (pass --questions)" if a.show >= 0 else "error: --show must be >= 0",
              file=sys.stderr)
        sys.exit(2)
    try:
        questions = read_jsonl(qpath)
    except (OSError, ValueError) as e:
        print(f"error: {qpath}: {e}", file=sys.stderr)
        sys.exit(2)
    phases = sorted((p for p in os.listdir(a.run) if p == "warm" or p.startswith("iter")),
                    key=lambda p: 0 if p == "warm" else int(p[4:]))
    positions = sorted({q["position"] for q in questions if "position" in q})
    print("| phase | questions | " + " | ".join(phase_stats([], questions)[0]) + " |")
    print("|---|---|" + "---|" * 5)
    for p in phases:
        path = os.path.join(a.run, p, "eval_questions.jsonl")
        if not os.path.isfile(path):
            continue
        rows = read_jsonl(path)
        for where in [None] + (positions if len(positions) > 1 else []):  # all, then by place in the document
            stats, n = phase_stats(rows, questions, where)
            name = p if where is None else f"{p}, problem {where + 1} of its document"
            print(f"| {name} | {n} | " + " | ".join(f"{100 * v:.1f}%" for v in stats.values()) + " |")
        for r in [r for r in rows if r.get("mode") == "latent"][:a.show]:
            q = questions[r["q"]]
            print(f"    gold {q.get('gold', '-')}, answer {q['answer']}: thoughts {r['thoughts']} -> "
                  f"{r['generated'][:16]!r}")


if __name__ == "__main__":
    main()
