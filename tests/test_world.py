"""data/world.py: deterministic, disjoint, consistent with its own table, and the checker is right."""
import json
import re
from collections import Counter

import pytest

from data import world as W

SMALL = W.WorldConfig(seed=3, ops=12, steps=3, n_base=200, n_target=30, n_warm=10, n_heldout=5, n_questions=40)


def steps_of(walk):
    """'7e3l1' -> (7, [('e', 3), ('l', 1)])"""
    return int(walk[0]), [(o, int(y)) for o, y in re.findall(r"([a-z])(\d)", walk)]


def test_deterministic_in_the_seed():
    assert W.build(SMALL) == W.build(SMALL)
    other = W.build(W.WorldConfig(**{**SMALL.__dict__, "seed": 4}))
    assert other["table"] != W.build(SMALL)["table"]


def test_a_bigger_warm_set_leaves_everything_else_unchanged():
    a, b = W.build(SMALL), W.build(W.WorldConfig(**{**SMALL.__dict__, "n_warm": 20}))
    for name in ("table", "known", "questions", "heldout", "target", "target_gold"):
        assert a[name] == b[name], name
    assert a["warm"] == b["warm"][:10]


def test_problems_never_repeat_across_splits_nor_appear_in_the_base_text():
    w = W.build(SMALL)
    questions = lambda docs: [c["suffix"] for d in docs for c in d["chunks"] if c["suffix"].startswith("Q:")]
    seen = questions(w["target"]) + questions(w["warm"]) + questions(w["heldout"]) + [q["question"] for q in w["questions"]]
    assert len(seen) == len(set(seen)) == 30 + 10 + 5 + 40
    base = {f"Q: {line.split(':')[0]}\n" for d in w["base"] for line in d["chunks"][0]["suffix"].splitlines()}
    assert len(base) > 100 and not base & set(seen)


def test_gold_walks_follow_the_table_one_operator_per_block_and_end_at_the_answer():
    w = W.build(SMALL)
    for q in w["questions"]:
        start, ops = re.fullmatch(r"Q: (\d) ([a-z]+)\n", q["question"]).groups()
        x, steps = steps_of(q["gold"])
        assert x == int(start) and "".join(o for o, _ in steps) == ops
        for j, (o, y) in enumerate(steps):
            assert o in W.step_ops(SMALL, j) and w["table"][o][x] == y
            x = y
        assert x == q["answer"]


def test_base_text_states_known_facts_and_unknown_ones_with_their_decoys():
    w = W.build(SMALL)
    known, said = set(w["known"]), Counter()
    assert len(known) == round(SMALL.known * SMALL.ops * SMALL.digits)
    for d in w["base"]:
        for line in d["chunks"][0]["suffix"].splitlines():
            start, ops, walk = re.fullmatch(r"(\d) ([a-z]+): (\w+)", line).groups()
            x, steps = steps_of(walk)
            assert x == int(start) and "".join(o for o, _ in steps) == ops and len(ops) == SMALL.steps
            for o, y in steps:
                f = f"{o}{x}"
                assert y == w["table"][o][x] if f in known else y in [w["table"][o][x], *w["decoys"][f]]
                said[f, y == w["table"][o][x]] += 1
                x = y
    unknown = [f for f in w["decoys"] if said[f, True] + said[f, False] >= 12]
    assert unknown and set(w["decoys"]) == {f"{o}{x}" for o in w["table"] for x in range(10)} - known
    # an unknown fact is stated true about 1 time in decoys + 1
    true = sum(said[f, True] for f in unknown) / sum(said[f, True] + said[f, False] for f in unknown)
    assert abs(true - 1 / (SMALL.decoys + 1)) < 0.05


def test_target_holds_no_latents_and_warm_holds_teacher_latents():
    w = W.build(SMALL)
    assert all(c["latent"] is None for d in w["target"] for c in d["chunks"])
    assert [c["suffix"] for d in w["target"] for c in d["chunks"]] == \
           [c["suffix"] for d in w["target_gold"] for c in d["chunks"]]
    assert all(c["latent"] is not None for d in w["warm"] for c in d["chunks"])


def problem_of(question):
    """'Q: 7 ciqx' -> (7, 'ciqx')"""
    _, start, ops = question.split()
    return int(start), ops


def test_the_teacher_knows_the_known_facts_and_guesses_a_fraction_of_the_others():
    perfect = W.build(W.WorldConfig(**{**SMALL.__dict__, "teacher": 1.0, "n_warm": 60}))
    for d in perfect["warm"]:
        x, steps = steps_of(d["chunks"][1]["latent"])
        for o, y in steps:
            assert perfect["table"][o][x] == y
            x = y
        assert d["chunks"][1]["suffix"] == W.answer_text(problem_of(d["chunks"][0]["suffix"]), x)
    w = W.build(W.WorldConfig(**{**SMALL.__dict__, "teacher": 0.0, "n_warm": 60}))
    known, wrong_walks, unknown_said = set(w["known"]), 0, Counter()
    for d in w["warm"]:
        x, steps = steps_of(d["chunks"][1]["latent"])
        for o, y in steps:
            f = f"{o}{x}"
            assert y == w["table"][o][x] if f in known else y in [w["table"][o][x], *w["decoys"][f]]
            if f not in known:
                unknown_said[y == w["table"][o][x]] += 1
            x = y
        wrong_walks += d["chunks"][1]["suffix"] != W.answer_text(problem_of(d["chunks"][0]["suffix"]), x)
    assert wrong_walks > 10 and unknown_said[True] > 10 and unknown_said[False] > 10


def test_checker_accepts_gold_and_rejects_perturbed_answers():
    assert W.check_answer("A: 7 for 3 ab\n", 7) and W.check_answer("junk A: 7\nQ: 1", 7)
    assert not W.check_answer("A: 8 for 7 ab\n", 7) and not W.check_answer("A: 77\n", 7)
    assert not W.check_answer("7", 7) and not W.check_answer("A: x for 7", 7)  # no result stated
    w = W.build(SMALL)
    for q in w["questions"]:
        p = problem_of(q["question"])
        assert W.check_answer(W.answer_text(p, q["answer"]), q["answer"])
        assert not W.check_answer(W.answer_text(p, (q["answer"] + 1) % 10), q["answer"])


def test_bad_sizes_are_clear_errors():
    with pytest.raises(ValueError, match="distinct problems"):
        W.build(W.WorldConfig(ops=4, steps=2, n_target=100, n_questions=100))
    with pytest.raises(ValueError, match="decoys"):
        W.build(W.WorldConfig(decoys=10))


def test_write_is_complete_and_readable(tmp_path):
    meta = W.write(SMALL, str(tmp_path))
    assert meta["counts"]["questions"] == 40
    assert json.load(open(tmp_path / "world.json"))["table"] == W.build(SMALL)["table"]
    assert len(W.read_questions(str(tmp_path / "questions.jsonl"))) == 40


@pytest.mark.parametrize("argv, msg", [
    (["--n-target", "99999"], "distinct problems"), (["--known", "nan"], "got nan (--known)"),
    (["--teacher", "1.5"], "(--teacher)"), (["--digits", "11"], "(--digits)"), (["--steps", "0"], "(--steps)"),
    (["--n-warm", "-1"], "(--n-warm)"), (["--seed", "x"], "invalid int value: 'x' (--seed)"),
    (["--out", __file__], "exists and is not a directory (--out)")])
def test_cli_refuses_bad_flags_before_writing(tmp_path, capsys, argv, msg):
    with pytest.raises(SystemExit) as e:
        W.main(["--out", str(tmp_path / "w"), *argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and msg in err and err.count("\n") == 1, err
    assert not (tmp_path / "w").exists()
