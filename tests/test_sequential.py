"""The sequential E-step (em.py --estep sequential): chunk i's context is the previous chunks laid out as in
training with the latents chosen for them, sampled chunk by chunk; its bound is an SMC estimate.
Checked: the layout of its prompts, that the estimate prod_i mean_k w_ik is unbiased for p(X) (with the
one-ancestor resampling em.py does), that chosen latents become the next chunk's context, and that units of any
size give the same latents."""
import itertools
import math
import random

import pytest

import em
from conftest import estep_docs
from data import layout
from data.config import EMConfig
from data.tokenizer import get_tokenizer

TOK = get_tokenizer("bytes")


def test_context_is_the_training_layout_in_prior_mode():
    """BOS + context + SoL PRIOR Z_i EoL X_i is exactly the start of the document's prior-mode sequence, for every
    chunk: the whole document so far, as its training row starts at its BOS (not the last 3 chunks, the paper's
    raw P_i, which for chunk 5 would start the context after BOS with chunk 2)."""
    xs = [TOK.encode(s) for s in ("Start from 7. ", "Apply c, then i. ", "The result is 5. ", "Begin with 2. ",
                                  "Apply d. ", "The result is 4. ")]
    zs = [[], None, TOK.encode("7c8i5"), [], [], TOK.encode("2d4")]
    edoc = {"id": "d", "x": xs, "z": zs}
    full = layout.sequence(TOK, edoc, "prior")
    assert layout.estep_prompts(TOK, xs, 5, 16, 256)[1] == [TOK.bos] + xs[2] + xs[3] + xs[4]  # raw: 3 chunks
    for i in range(6):
        prompt, pre, x, dropped = layout.estep_prompts(TOK, xs, i, 16, 256, zs=zs)
        joint = pre + layout.joint_continuation(TOK, zs[i] or [], x)
        if zs[i] is not None:
            assert joint == full[:len(joint)]
        assert pre == full[:len(pre)] and dropped == (0, 0)
        assert prompt == pre + [TOK.sol, TOK.eol] + xs[i] + [TOK.sol, TOK.post]
    # without latents the context is the paper's raw prefix, as before
    assert layout.estep_prompts(TOK, xs, 2, 16, 256)[1] == [TOK.bos] + xs[0] + xs[1]
    # a tight block keeps the newest context tokens and says how many it dropped
    prompt, pre, x, (drop_p, drop_x) = layout.estep_prompts(TOK, xs, 2, 16, 50, zs=zs)
    assert len(prompt) + 16 <= 50 and drop_p > 0 and drop_x == 0
    assert pre[1:] == layout.context(TOK, xs, 2, zs)[drop_p:]


def test_think_prompt_lays_out_a_chunked_question():
    chunks = [TOK.encode("Start from 7. "), TOK.encode("Apply c. ")]
    p = layout.think_prompt(TOK, chunks)
    S, P, E = TOK.sol, TOK.prior, TOK.eol
    assert p == [TOK.bos, S, P, E] + chunks[0] + [S, P, E] + chunks[1] + [S, P]
    assert layout.think_prompt(TOK, chunks[0]) == [TOK.bos, S, P, E] + chunks[0] + [S, P]
    z = TOK.encode("7c8")
    assert layout.think_layout(TOK, chunks, [z]) == [TOK.bos, S, P, *z, E] + chunks[0] + [S, P]
    assert layout.think_layout(TOK, chunks, [z, []]) == [TOK.bos, S, P, *z, E] + chunks[0] + [S, P, E] + chunks[1]


def test_a_question_is_laid_out_as_training_lays_out_its_document():
    """For every problem of every training document of the prose world (first or second in its document), the
    question the world asks about it (data/world.prose_question, as its test questions are made) and the
    thoughts accuracy.think_answers writes in turn give the tokens of that document's prior-mode training sequence,
    up to the thought of the chunk holding the result (the gold walks as the earlier thoughts); with that thought
    too, up to the result digit."""
    from data import world as W
    cfg = W.WorldConfig(seed=1, shape="prose", ops=12, steps=3, n_base=10, n_target=40, n_warm=2, n_heldout=2,
                        n_questions=2, chunk_tokens=64)
    w = W.build(cfg)
    before = 0
    for doc in w["target_gold"]:
        text = "".join(c["suffix"] for c in doc["chunks"])
        walks = [z for c in doc["chunks"] for z in (c["latent"] or "").split()]
        edoc = layout.encode_doc(TOK, doc)
        train_seq = layout.sequence(TOK, edoc, "prior")
        for j, (m, z) in enumerate(zip(W.RESULT_RE.finditer(text), walks)):
            q = W.prose_question(w["table"], (int(z[0]), z[1::2]), doc, text, (0, m.start(1)), j)
            assert q["gold"] == z and q["question"] == text[:m.start(1)] and q["open"]
            chunks = [TOK.encode(c) for c in q["chunks"]]
            prompt = layout.think_layout(TOK, chunks, edoc["z"][:len(chunks) - 1])  # the last thought is next
            assert prompt == train_seq[:len(prompt)] and prompt[-2:] == [TOK.sol, TOK.prior]
            answer_prompt = layout.think_layout(TOK, chunks, edoc["z"][:len(chunks)])  # the answer is next
            assert answer_prompt == train_seq[:len(answer_prompt)] and z in TOK.decode(edoc["z"][len(chunks) - 1])
            assert TOK.decode(train_seq[len(answer_prompt):len(answer_prompt) + 2]) == q["answer_text"]
            before += q["chunks"][-1] != W.RESULT_HEAD  # the thought would come before some of the operators
    assert before == 0  # paragraphs: the chunk holding a result starts at its sentence, after the whole statement
    for q in w["questions"]:  # the world's own questions are made the same way
        assert q["open"] and "".join(q["chunks"]) == q["question"] and q["question"].endswith(W.RESULT_HEAD)


# A toy model with a known marginal: binary latents, z_c depends on z_{c-1}, x_c on z_c; q proposes z_c ~ Bern(Q1).
# Chosen so that the weights of a chunk's samples are close (x_1 says little about z_1) while z_1 decides x_2:
# resampling that does not follow the weights picks the wrong ancestors and misses p(X) by many standard errors.
P_Z = {None: 0.2, 0: 0.02, 1: 0.9}  # p(z_c = 1 | z_{c-1}); None: first chunk
P_X = {0: 0.3, 1: 0.9}  # p(x_c = 1 | z_c)
Q1 = 0.7
XS = [1, 1]


def exact_log_px(xs):
    total = 0.0
    for z in itertools.product((0, 1), repeat=len(xs)):
        p, prev = 1.0, None
        for zc, xc in zip(z, xs):
            pz = P_Z[prev] if zc else 1 - P_Z[prev]
            px = P_X[zc] if xc else 1 - P_X[zc]
            p, prev = p * pz * px, zc
        total += p
    return math.log(total)


def fake_sampler(rng, seen):
    def propose(model, tok, cfg, edocs, keys, k, tag, zs=None, temperature=None):
        out = []
        for d, c in keys:
            prev = None if c == 0 or zs is None else zs[d][c - 1][0]
            seen.append((d, c, None if prev is None else list(zs[d][c - 1])))
            xc = edocs[d]["x"][c][0]
            samples = []
            for _ in range(k):
                z = int(rng.random() < Q1)
                lq = math.log(Q1 if z else 1 - Q1)
                lp = math.log(P_Z[prev] if z else 1 - P_Z[prev]) + math.log(P_X[z] if xc else 1 - P_X[z])
                samples.append(em.Sample([z], lq, lp, [0.0, 0.0], False))
            out.append(samples)
        return out
    return propose


def smc_estimates(monkeypatch, k, runs):
    """em.estep_docs (sequential) on the toy `runs` times with K = k -> (z of mean(p_hat / p(X)) against 1, the mean
    log p_hat - log p(X)), p_hat = prod_i mean_k w_ik."""
    edocs = [{"id": "doc", "x": [[x] for x in XS], "z": [None] * len(XS)}]
    monkeypatch.setattr(em, "propose", fake_sampler(random.Random(k), []))
    exact, ratio, logs, keys = exact_log_px(XS), [], [], [(0, c) for c in range(len(XS))]
    for run in range(runs):
        res = em.estep_docs(None, TOK, EMConfig(seed=run), edocs, keys, k, "t", lambda d, c: (run, k, d, c),
                            "sequential")
        log_z = sum(em.iw_elbo(em.importance_weights([s.log_p for s in res[0, c][0]],
                                                     [s.log_q for s in res[0, c][0]])) for c in range(len(XS)))
        ratio.append(math.exp(log_z - exact))
        logs.append(log_z - exact)
    mean = sum(ratio) / runs
    se = math.sqrt(sum((r - mean) ** 2 for r in ratio) / (runs - 1) / runs)
    return (mean - 1) / se, sum(logs) / runs


def test_one_ancestor_resampling_is_an_unbiased_estimate_of_p_x(monkeypatch):
    """E[prod_i mean_k w_ik] = p(X) for em.estep_docs' sequential scheme (one ancestor picked by weight, extended K
    times), checked on a toy model whose marginal is exact; the log of it is therefore a bound (Jensen), and
    the bound tightens with K. With 1,000 runs at K = 4 argmax resampling misses by -18 standard errors and a
    uniform pick by +7 (test_the_unbiasedness_check_fails_on_argmax_and_uniform_resampling)."""
    bounds = []
    for k in (1, 2, 4):
        z, mean_log = smc_estimates(monkeypatch, k, 1000)
        assert abs(z) < 4, (k, z)
        assert mean_log < 0, k  # below log p(X)
        bounds.append(mean_log)
    assert bounds[0] < bounds[1] < bounds[2]  # the bound tightens with K


@pytest.mark.parametrize("wrong", ["argmax", "uniform"])
def test_the_unbiasedness_check_fails_on_argmax_and_uniform_resampling(monkeypatch, wrong):
    """The check above has power: resampling by argmax (the heaviest sample always) or uniformly (weights
    ignored) puts the K = 4 estimate more than 4 standard errors from p(X), in the direction each one errs."""
    pick = {"argmax": lambda log_w, key: max(range(len(log_w)), key=log_w.__getitem__),
            "uniform": lambda log_w, key: random.Random(em.key_int(*key)).randrange(len(log_w))}[wrong]
    monkeypatch.setattr(em, "resample", pick)
    z, _ = smc_estimates(monkeypatch, 4, 1000)
    assert (z < -4) if wrong == "argmax" else (z > 4), z


def test_chosen_latent_is_the_next_chunks_context(monkeypatch):
    """The context of chunk c is the latent resampled for chunk c-1 of the same document, in every document."""
    seen = []
    monkeypatch.setattr(em, "propose", fake_sampler(random.Random(1), seen))
    edocs = [{"id": f"d{i}", "x": [[1]] * n, "z": [None] * n} for i, n in enumerate((3, 1, 4))]
    keys = [(d, c) for d, ed in enumerate(edocs) for c in range(len(ed["x"]))]
    res = em.estep_docs(None, TOK, EMConfig(), edocs, keys, 3, "t", lambda d, c: (d, c), "sequential")
    rows = {key: row for key, (_, row) in res.items()}
    assert list(rows) == [(0, 0), (1, 0), (2, 0), (0, 1), (2, 1), (0, 2), (2, 2), (2, 3)]  # position by position
    for d, c, ctx in seen:
        if c:
            assert ctx == res[d, c - 1][0][rows[d, c - 1]["pick"]].z == rows[d, c - 1]["latent_ids"]
    assert [r["pick"] for r in rows.values()] == [em.pick(TOK, res[key][0], key)["pick"] for key in rows]
    seen.clear()  # the paper's context: every chunk in one batch, no latent as context
    em.estep_docs(None, TOK, EMConfig(), edocs, keys, 3, "t", lambda d, c: (d, c), "paper")
    assert seen == [(d, c, None) for d, c in keys]


@pytest.fixture(scope="module")
def tiny_model():
    import torch
    from model import GPT, GPTConfig
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=TOK.n_vocab, block_size=64, n_layer=1, n_head=2, n_embd=32))
    return m.eval()


def test_sequential_estep_is_the_same_for_any_unit_size(tiny_model, tmp_path):
    """Units hold whole documents (a document's chunks are sampled in order); the latents are keyed, so how
    the work is cut does not change them."""
    docs = [{"id": f"d{i}", "chunks": [{"suffix": s, "latent": None} for s in ("ab. ", "cd. ", "ef. ")[:1 + i % 3]]}
            for i in range(7)]
    cfg = EMConfig(k=2, max_latent=6, block_size=64, estep="sequential", gen_batch=5)
    a, rows_a = estep_docs(tiny_model, TOK, cfg, docs, 1, str(tmp_path / "a"), unit=4)
    b, rows_b = estep_docs(tiny_model, TOK, cfg, docs, 1, str(tmp_path / "b"), unit=512)
    assert a == b and [r["pick"] for r in rows_a] == [r["pick"] for r in rows_b]
    assert len(list((tmp_path / "a").iterdir())) > 1  # it was cut into several units
    docs_per_unit = [{r["doc"] for r in em.read_json(str(p))} for p in sorted((tmp_path / "a").iterdir())]
    assert sum(len(d) for d in docs_per_unit) == len(docs)  # no document is split across units


@pytest.mark.parametrize("estep", ["paper", "sequential"])
def test_held_out_bound_is_the_same_in_any_grouping(tiny_model, estep):
    """eval_nll evaluates the held-out documents in groups of whole documents (its memory does not grow with the
    held-out set); the draws are keyed, so cutting the set into groups changes no number (raw NLL and bounds)."""
    docs = [{"id": f"h{i}", "chunks": [{"suffix": s, "latent": None} for s in ("ab. ", "cd. ", "ef. ")[:1 + i % 3]]}
            for i in range(6)]
    cfg = EMConfig(k=2, max_latent=6, block_size=64, estep=estep, gen_batch=4)
    for latent in (False, True):
        whole = em.eval_nll(tiny_model, TOK, cfg, docs, latent, [1, 2])
        grouped = em.eval_nll(tiny_model, TOK, cfg, iter(docs), latent, [1, 2], unit=3)
        assert whole.keys() == grouped.keys() and whole == pytest.approx(grouped, rel=1e-5)  # float summation order
        assert ("nll_k2" in whole) == latent
        n_tok, chunks = sum(len(c["suffix"]) for d in docs for c in d["chunks"]), sum(len(d["chunks"]) for d in docs)
        if latent:  # the spec's bound is the PRIOR-conditional one plus PRIOR's cost, per chunk of each
            assert whole["nll_k2"] - whole["nll_np_k2"] == pytest.approx(whole["prior_nats"] * chunks / n_tok)
            assert whole["prior_nats"] > 0 and whole["sol_nats"] > 0
        else:  # exact: log p of every raw token after its prefix, as layout.raw_pair cuts it
            pairs = [layout.raw_pair(TOK, [TOK.encode(c["suffix"]) for c in d["chunks"]], i, cfg.max_latent, 64)
                     for d in docs for i in range(len(d["chunks"]))]
            lp = sum(s["sum"] for s in em.score(tiny_model, [p for p, _ in pairs], [x for _, x in pairs]))
            assert whole["nll"] == pytest.approx(-lp / n_tok, rel=1e-5)
