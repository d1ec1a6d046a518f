"""data/world.py: deterministic, disjoint, consistent with its own table, and the checker is right."""
import json
import re

import pytest

from data import world as W

SMALL = W.WorldConfig(seed=3, ops=6, problems_per_doc=2, n_base=20, n_target=30, n_warm=10, n_heldout=5, n_questions=40)


def test_deterministic_in_the_seed():
    assert W.build(SMALL) == W.build(SMALL)
    other = W.build(W.WorldConfig(**{**SMALL.__dict__, "seed": 4}))
    assert other["table"] != W.build(SMALL)["table"]


def test_problems_never_repeat_across_splits():
    w = W.build(SMALL)
    questions = lambda docs: [c["suffix"] for d in docs for c in d["chunks"] if c["suffix"].startswith("Q:")]
    seen = questions(w["target"]) + questions(w["warm"]) + questions(w["heldout"]) + [q["question"] for q in w["questions"]]
    assert len(seen) == len(set(seen)) == (30 + 10 + 5) * 2 + 40


def test_gold_walks_follow_the_table_and_end_at_the_answer():
    w = W.build(SMALL)
    table = w["table"]
    for q in w["questions"]:
        start, labels = re.fullmatch(r"Q: (\d) ([a-zA-Z]+)\n", q["question"]).groups()
        steps = re.findall(r"([a-zA-Z])(\d)", q["gold"])
        assert q["gold"].startswith(start) and "".join(o for o, _ in steps) == labels
        x = int(start)
        for j, (o, y) in enumerate(steps):  # step j: the j-th letter, lowercase = f, uppercase = g
            assert o.lower() == chr(97 + j)
            assert table[0 if o.islower() else 1][x] == int(y)
            x = int(y)
        assert x == q["answer"]
    for line in w["base"][0]["chunks"][0]["suffix"].splitlines():  # base text states true facts only
        x = int(line[0])
        for o, y in re.findall(r"([a-zA-Z])(\d)", line):
            assert table[0 if o.islower() else 1][x] == int(y)
            x = int(y)


def test_target_holds_no_latents_and_warm_holds_teacher_latents():
    w = W.build(SMALL)
    assert all(c["latent"] is None for d in w["target"] for c in d["chunks"])
    assert [c["suffix"] for d in w["target"] for c in d["chunks"]] == \
           [c["suffix"] for d in w["target_gold"] for c in d["chunks"]]
    assert all(c["latent"] is not None for d in w["warm"] for c in d["chunks"])


def test_checker_accepts_gold_and_rejects_perturbed_answers():
    assert W.check_answer("A: 7\n", 7) and W.check_answer("junk A: 7\nQ: 1", 7)
    assert not W.check_answer("A: 8\n", 7) and not W.check_answer("A: 77\n", 7) and not W.check_answer("7", 7)
    w = W.build(SMALL)
    for q in w["questions"]:
        assert W.check_answer(W.answer_text(q["answer"]), q["answer"])
        assert not W.check_answer(W.answer_text((q["answer"] + 1) % 10), q["answer"])


def test_too_many_problems_is_a_clear_error():
    with pytest.raises(ValueError, match="distinct problems"):
        W.build(W.WorldConfig(ops=2, n_target=100, n_questions=100))


def test_write_is_complete_and_readable(tmp_path):
    meta = W.write(SMALL, str(tmp_path))
    assert meta["counts"]["questions"] == 40
    assert json.load(open(tmp_path / "world.json"))["table"] == W.build(SMALL)["table"]
    assert len(W.read_questions(str(tmp_path / "questions.jsonl"))) == 40
