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
from data.tokenizer import get_tokenizer

TOK = get_tokenizer("bytes")


def test_context_is_the_training_layout_in_prior_mode():
    """BOS + context + SoL PRIOR Z_i EoL X_i is exactly the start of the document's prior-mode sequence."""
    xs = [TOK.encode(s) for s in ("Start from 7. ", "Apply c, then i. ", "The result is 5. ")]
    zs = [[], None, TOK.encode("7c8i5")]
    edoc = {"id": "d", "x": xs, "z": zs}
    full = layout.sequence(TOK, edoc, "prior")
    for i in range(3):
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


# A toy model with a known marginal: binary latents, z_c depends on z_{c-1}, x_c on z_c; q proposes z_c ~ Bern(.3)
P_Z = {None: 0.5, 0: 0.05, 1: 0.95}  # p(z_c = 1 | z_{c-1}); None: first chunk
P_X = {0: 0.05, 1: 0.9}  # p(x_c = 1 | z_c)
Q1 = 0.3


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
    def sample_latents(model, tok, cfg, edocs, keys, k, temperature=None, zs=None):
        out = []
        for d, c, _ in keys:
            prev = None if c == 0 else zs[d][c - 1][0]
            seen.append((d, c, None if c == 0 else list(zs[d][c - 1])))
            xc = edocs[d]["x"][c][0]
            samples = []
            for _ in range(k):
                z = int(rng.random() < Q1)
                lq = math.log(Q1 if z else 1 - Q1)
                lp = math.log(P_Z[prev] if z else 1 - P_Z[prev]) + math.log(P_X[z] if xc else 1 - P_X[z])
                samples.append({"z": [z], "log_q": lq, "log_p": lp, "log_p_all": lp, "capped": False, "n_x": 1,
                                "dropped": (0, 0)})
            out.append(samples)
        return out
    return sample_latents


def test_one_ancestor_resampling_is_an_unbiased_estimate_of_p_x(monkeypatch):
    """E[prod_i mean_k w_ik] = p(X) for em.sample_sequential's scheme (one ancestor picked by weight, extended K
    times), checked on a toy model whose marginal is exact; the log of it is therefore a bound (Jensen), and
    the bound tightens with K."""
    xs = [1, 1, 1, 1, 1, 1]  # q proposes z = 1 rarely, the posterior wants it: picking uniformly is 17 SE off
    edocs = [{"id": "doc", "x": [[x] for x in xs], "z": [None] * len(xs)}]
    rng = random.Random(0)
    monkeypatch.setattr(em, "sample_latents", fake_sampler(rng, []))
    exact = exact_log_px(xs)
    prev_bound = -math.inf
    for k in (1, 2, 4):
        est, logs = [], []
        for run in range(6000):
            cfg = em.EMConfig(seed=run)
            res, _ = em.sample_sequential(None, TOK, cfg, edocs, k, "t", lambda d, c: (run, k, d, c))
            log_z = sum(em.iw_elbo(em.importance_weights([s["log_p"] for s in res[0, c]],
                                                         [s["log_q"] for s in res[0, c]])) for c in range(len(xs)))
            est.append(math.exp(log_z))
            logs.append(log_z)
        mean = sum(est) / len(est)
        se = (sum((e - mean) ** 2 for e in est) / len(est)) ** 0.5 / len(est) ** 0.5
        assert abs(mean - math.exp(exact)) < 4 * se, (k, mean, math.exp(exact), se)
        assert sum(logs) / len(logs) < exact
        assert sum(logs) / len(logs) > prev_bound  # the bound tightens with K
        prev_bound = sum(logs) / len(logs)


def test_chosen_latent_is_the_next_chunks_context(monkeypatch):
    """The context of chunk c is the latent resampled for chunk c-1 of the same document, in every document."""
    seen = []
    monkeypatch.setattr(em, "sample_latents", fake_sampler(random.Random(1), seen))
    edocs = [{"id": f"d{i}", "x": [[1]] * n, "z": [None] * n} for i, n in enumerate((3, 1, 4))]
    cfg = em.EMConfig()
    res, rows = em.sample_sequential(None, TOK, cfg, edocs, 3, "t", lambda d, c: (d, c))
    assert sorted(rows) == [(0, 0), (0, 1), (0, 2), (1, 0), (2, 0), (2, 1), (2, 2), (2, 3)]
    for d, c, ctx in seen:
        if c:
            assert ctx == res[d, c - 1][rows[d, c - 1]["pick"]]["z"] == rows[d, c - 1]["latent_ids"]
    assert [r["pick"] for r in rows.values()] == [em.pick_latent(TOK, cfg, res[key], key)["pick"] for key in rows]


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
    cfg = em.EMConfig(k=2, max_latent=6, block_size=64, estep="sequential", gen_batch=5)
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
    cfg = em.EMConfig(k=2, max_latent=6, block_size=64, estep=estep, gen_batch=4)
    for latent in (False, True):
        whole = em.eval_nll(tiny_model, TOK, cfg, docs, latent, [1, 2])
        grouped = em.eval_nll(tiny_model, TOK, cfg, iter(docs), latent, [1, 2], unit=3)
        assert whole.keys() == grouped.keys() and whole == pytest.approx(grouped, rel=1e-6)  # summation order
        assert ("nll_k2" in whole) == latent and all(math.isfinite(v) for v in whole.values())
