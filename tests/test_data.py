"""Tests for data/: corpus reading and sentence chunking (data/corpus.py), dataset preparation
(data/prepare.py), and the BoLT token layouts (data/layout.py) against ../shared/docs/BOLT.md. CPU, seconds."""
import json
import re
import os

import pytest

from conftest import run_py
from data import layout
from data.corpus import chunk_text, content_id, read_docs, split_sentences, write_docs
from data.prepare import main as prepare_main
from data.tokenizer import get_tokenizer

TEXTS = [
    "Plain sentence one. Sentence two! Is this three? Yes.  Double space.\tTab after.\n\nNew paragraph here.",
    "Ünïcödé façade. Ça va? Grüße aus Köln… Noch ein Satz. 日本語の文。次の文！最後？ Emoji 🙂 here. Done.",
    "  leading spaces. trailing lowercase keeps e.g. this whole. Line\r\nbreaks\r\n\r\nCRLF para.   \n",
    "No terminal punctuation at all, just a long run of words without any sentence end in sight",
    "Odd\u00a0nbsp. Line\u2028separator. Para\u2029separator. Zero\u200bwidth. \x0bvtab\x0c formfeed.  ",
    "".join(f"{chr(65 + k % 26)}. " for k in range(208)),  # 208 one-letter sentences
    "x",
    " \n\t ",
]


def many_sentences(n):
    return "".join(f"Sentence number {k} is here. " for k in range(n))


# ----------------------------------------------------------------------------- chunking

def test_split_sentences_exact():
    text = "Hi there. It is e.g. fine!  Next?\n\nPara 2 is here. 終わり。 Tail"
    assert split_sentences(text) == ["Hi there. ", "It is e.g. fine!  ", "Next?\n\n", "Para 2 is here. ",
                                     "終わり。 ", "Tail"]


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("max_tokens", [None, 7, 30])
def test_chunks_lossless(text, max_tokens):
    tok = get_tokenizer("bytes")
    for kw in ({}, {"mean_sentences": 1}, {"mean_sentences": 3, "max_sentences": 4}):
        chunks = chunk_text(text, tok=tok if max_tokens else None, max_tokens=max_tokens, **kw)
        assert "".join(chunks) == text
        assert all(chunks)  # no empty chunk
        assert chunk_text(text, tok=tok if max_tokens else None, max_tokens=max_tokens, **kw) == chunks


def test_sentences_per_chunk():
    text = many_sentences(800)
    assert [len(split_sentences(c)) for c in chunk_text(text, mean_sentences=1)] == [1] * 800
    capped = chunk_text(text, mean_sentences=8, max_sentences=3)
    assert max(len(split_sentences(c)) for c in capped) == 3
    sizes = [len(split_sentences(c)) for c in chunk_text(text)]  # 1 + Poisson(7), cap 20
    assert sum(sizes) == 800 and max(sizes) <= 20 and min(sizes) >= 1
    assert 7.0 < sum(sizes) / len(sizes) < 9.0
    assert len(set(sizes)) > 3  # sizes really vary


def test_a_chunk_never_crosses_a_blank_line():
    """A paragraph break ends a chunk whatever the sentence count and budget; inside a paragraph the sentence
    packing goes on (a paragraph over budget is still cut)."""
    paras = [many_sentences(n) for n in (3, 1, 12, 2)]
    text = "\n\n".join(p.rstrip(" ") for p in paras)
    for kw in ({}, {"max_tokens": 200}):
        chunks = chunk_text(text, **kw)
        assert "".join(chunks) == text
        assert all("\n\n" not in c.rstrip("\n") for c in chunks)  # a break only at a chunk's end
        starts = {sum(map(len, chunks[:k])) for k in range(len(chunks))}
        assert {m.end() for m in re.finditer(r"\n\n", text)} <= starts
        assert len(chunks) >= len(paras) + (1 if kw else 0)  # 12 sentences of ~30 bytes: cut by the budget


def test_boundaries_depend_on_text_only():
    a, b = many_sentences(200), many_sentences(200).replace("here", "there")
    assert chunk_text(a) == chunk_text(a)
    sizes = lambda t: [len(split_sentences(c)) for c in chunk_text(t)]
    assert sizes(a) != sizes(b)  # a different text seeds a different RNG


def test_deterministic_across_processes():
    """Same chunks and ids in fresh interpreters with different hash salts (hashlib, never hash())."""
    code = ("import json, sys; from data.corpus import chunk_text, content_id; from data.layout import coin; "
            "texts = json.loads(sys.stdin.read()); "
            "print(json.dumps([[chunk_text(t), chunk_text(t, mean_sentences=3, max_tokens=12), content_id(t)] "
            "for t in texts] + [[coin(0, e, 'd', c) for e in range(4) for c in range(8)]]))")
    texts = TEXTS + [many_sentences(100)]
    outs = []
    for seed in ("0", "1", "12345"):
        r = run_py(["-c", code], env={"PYTHONHASHSEED": seed}, input=json.dumps(texts), timeout=120, check=True)
        outs.append(json.loads(r.stdout))
    here = [[chunk_text(t), chunk_text(t, mean_sentences=3, max_tokens=12), content_id(t)] for t in texts]
    here.append([layout.coin(0, e, "d", c) for e in range(4) for c in range(8)])
    assert outs[0] == outs[1] == outs[2] == json.loads(json.dumps(here))


def test_token_budget():
    byt = get_tokenizer("bytes")
    text = "".join(TEXTS) + " Supercalifragilisticexpialidocious" * 3 + " " + "z" * 100 + ". End."
    for tok, budget in ((byt, 9), (byt, 40), (lambda s: len(s.split()), 3), (None, 25)):
        length = (lambda s: len(byt.encode(s))) if tok is byt else (tok or len)
        chunks = chunk_text(text, tok=tok, max_tokens=budget)
        assert "".join(chunks) == text
        assert max(length(c) for c in chunks) <= budget
    with pytest.raises(ValueError, match="smaller than the single character"):
        chunk_text("é", tok=byt, max_tokens=1)  # 2 UTF-8 bytes cannot fit in 1 byte token


def test_token_budget_gpt2_and_whole_words():
    try:
        tok = get_tokenizer("gpt2")
    except FileNotFoundError:
        pytest.skip("GPT-2 BPE files not installed")
    text = " ".join(f"word{k} and more words follow without any sentence end" for k in range(40))
    chunks = chunk_text(text, tok=tok, max_tokens=16)
    assert "".join(chunks) == text
    assert max(len(tok.encode(c)) for c in chunks) <= 16
    assert all(c.endswith(" ") for c in chunks[:-1])  # every word short enough: cuts fall between words


# ----------------------------------------------------------------------------- layouts

def small_doc():
    return {"id": "doc-1", "chunks": [{"suffix": "Ann has 3. ", "latent": "1+2=3"},
                                      {"suffix": "Bob has 5. ", "latent": None},
                                      {"suffix": "Sum is 8.", "latent": "3+5=8"}]}


S, E, PR, PO, B = "<|start_of_latent|>", "<|end_of_latent|>", "<|prior|>", "<|posterior|>", "<|endoftext|>"
PRIOR_CH = [f"{S}{PR}1+2=3{E}Ann has 3. ", f"{S}{E}Bob has 5. ", f"{S}{PR}3+5=8{E}Sum is 8."]
POST_CH = [f"{S}{E}Ann has 3. {S}{PO}1+2=3{E}", f"{S}{E}Bob has 5. ", f"{S}{E}Sum is 8.{S}{PO}3+5=8{E}"]


def test_layout_sequences_exact():
    tok = get_tokenizer("bytes")
    ed = layout.encode_doc(tok, small_doc())
    dec = lambda mode, **kw: tok.decode(layout.sequence(tok, ed, mode, **kw))
    assert dec("raw") == f"{B}Ann has 3. Bob has 5. Sum is 8.{B}"
    assert dec("prior") == B + "".join(PRIOR_CH) + B
    assert dec("posterior") == B + "".join(POST_CH) + B
    seq = layout.sequence(tok, ed, "prior")
    assert seq[:3] == [tok.bos, tok.sol, tok.prior] and seq[-1] == tok.eos
    with pytest.raises(ValueError):
        layout.sequence(tok, ed, "bogus")


def test_random_layout_coin():
    tok = get_tokenizer("bytes")
    ed = layout.encode_doc(tok, small_doc())
    seqs = set()
    for epoch in range(16):
        coins = [layout.coin(7, epoch, "doc-1", i) for i in range(3)]
        want = B + "".join(PRIOR_CH[i] if c else POST_CH[i] for i, c in enumerate(coins)) + B
        got = tok.decode(layout.sequence(tok, ed, "random", seed=7, epoch=epoch))
        assert got == want
        assert layout.sequence(tok, ed, "random", seed=7, epoch=epoch) == \
            layout.sequence(tok, ed, "random", seed=7, epoch=epoch)  # same key, same result
        seqs.add(got)
    assert len(seqs) > 1  # the coin is re-flipped across epochs
    flips = [layout.coin(s, e, f"d{d}", c) for s in range(2) for e in range(10) for d in range(10) for c in range(10)]
    assert 0.45 < sum(flips) / len(flips) < 0.55
    assert [layout.coin(0, 1, "a", c) for c in range(32)] != [layout.coin(0, 2, "a", c) for c in range(32)]
    assert [layout.coin(0, 1, "a", c) for c in range(32)] != [layout.coin(0, 1, "b", c) for c in range(32)]


def test_sequence_length_without_tokens():
    """What a shard reader uses to skip a document: len(sequence) from chunk lengths (-1 = no latent)."""
    tok = get_tokenizer("bytes")
    docs = [{"id": "a", "x": [[1, 2], [], [3]], "z": [None, [], [4, 5, 6]]}, {"id": "b", "x": [[7]], "z": [[8]]},
            {"id": "c", "x": [[9] * 5] * 6, "z": [[1], None] * 3}]
    for d in docs:
        lens = ([len(x) for x in d["x"]], [-1 if z is None else len(z) for z in d["z"]])
        for mode in layout.MODES:
            for epoch in range(6):
                want = len(layout.sequence(tok, d, mode, seed=3, epoch=epoch))
                assert layout.sequence_length(d["id"], *lens, mode, seed=3, epoch=epoch) == want


def test_literal_special_strings_stay_text():
    tok = get_tokenizer("bytes")
    doc = {"id": "x", "chunks": [{"suffix": "say <|prior|> and <|endoftext|>", "latent": "<|end_of_latent|>"}]}
    seq = layout.sequence(tok, layout.encode_doc(tok, doc), "posterior")
    assert [t for t in seq if t in tok.special_ids] == [tok.bos, tok.sol, tok.eol, tok.sol, tok.post, tok.eol,
                                                        tok.eos]


def five_chunks(tok):
    return [tok.encode(s) for s in ("aaaa ", "bbbbb ", "cccccc ", "ddddddd ", "XXXXXXXXXX")]


def test_estep_prompt_and_joint_exact():
    tok = get_tokenizer("bytes")
    xs = five_chunks(tok)
    prompt, pre, x, dropped = layout.estep_prompts(tok, xs, 4, max_latent=8, block_size=128)
    assert tok.decode(prompt) == f"{B}bbbbb cccccc ddddddd {S}{E}XXXXXXXXXX{S}{PO}"  # 3 previous chunks only
    assert tok.decode(pre) == f"{B}bbbbb cccccc ddddddd " and prompt[:len(pre)] == pre  # identical BOS + P_i
    assert x == xs[4] and dropped == (0, 0)
    cont = layout.joint_continuation(tok, tok.encode("b+c=d"), x)
    assert tok.decode(cont) == f"{S}{PR}b+c=d{E}XXXXXXXXXX"
    first, pre0, _, d0 = layout.estep_prompts(tok, xs, 0, max_latent=8, block_size=128)
    assert tok.decode(first) == f"{B}{S}{E}aaaa {S}{PO}" and pre0 == [tok.bos] and d0 == (0, 0)


def test_estep_budgets():
    tok = get_tokenizer("bytes")
    xs = five_chunks(tok)
    full_p, x_full = [t for c in xs[1:4] for t in c], xs[4]
    max_latent = 6
    with pytest.raises(ValueError):
        layout.estep_prompts(tok, xs, 4, max_latent=max_latent, block_size=max_latent + 5)
    for block in range(max_latent + 6, 60):
        prompt, pre, x, (drop_p, drop_x) = layout.estep_prompts(tok, xs, 4, max_latent, block)
        assert len(prompt) + max_latent <= block
        capped = layout.joint_continuation(tok, [ord("z")] * max_latent, x)  # a latent that hit the cap
        assert len(pre) + len(capped) <= block
        assert pre[0] == tok.bos and pre[1:] == full_p[len(full_p) - (len(pre) - 1):]  # left-truncated P_i
        assert x == x_full[:len(x)]  # right-truncated X_i
        assert (drop_p, drop_x) == (len(full_p) - (len(pre) - 1), len(x_full) - len(x))
        if drop_x:
            assert len(pre) == 1  # P_i is dropped entirely before any of X_i
        if drop_p:
            assert len(prompt) + max_latent == block  # truncation only when the budget demands it
        assert prompt == pre + [tok.sol, tok.eol] + x + [tok.sol, tok.post]
    # prefix_budget caps P_i; a budget above its length keeps all of it
    for pb, keep in ((5, 5), (len(full_p) + 4, len(full_p)), (0, 0)):
        _, pre, _, (drop_p, _) = layout.estep_prompts(tok, xs, 4, 4, 256, prefix_budget=pb)
        assert pre[1:] == full_p[len(full_p) - keep:] and drop_p == len(full_p) - keep


# ----------------------------------------------------------------------------- reading and writing

def write_lines(path, lines):
    with open(path, "wb") as f:
        f.write(b"".join((ln if isinstance(ln, bytes) else ln.encode("utf-8")) + b"\n" for ln in lines))


def test_authors_format_roundtrip(tmp_path):
    docs = [{"id": "a", "chunks": [{"suffix": "X1 ünï \u2028 line. ", "latent": "Z1\nthought"},
                                   {"suffix": "X2 🙂", "latent": None}]},
            {"id": "b", "chunks": [{"suffix": "lone \ud800 surrogate", "latent": "z"}]}]
    p = tmp_path / "d.jsonl"
    write_docs(p, docs)
    assert read_docs(p) == docs
    write_docs(p, read_docs(p))
    assert read_docs(p) == docs
    assert os.listdir(tmp_path) == ["d.jsonl"]  # no temp file left behind
    with pytest.raises(KeyError):
        write_docs(p, docs + [{"id": "broken"}])  # fails mid-write: the old file stays whole
    assert read_docs(p) == docs and os.listdir(tmp_path) == ["d.jsonl"]


def test_read_formats_and_ids(tmp_path):
    text = "First sentence. Second one."
    p = tmp_path / "c.jsonl"
    write_lines(p, [json.dumps({"text": text, "meta": {"x": 1}}), "",
                    json.dumps({"id": 7, "chunks": [{"suffix": "x", "other": 1}, {"suffix": "y", "latent": "z"}]}),
                    json.dumps({"chunks": [{"suffix": "Other doc."}]})])
    docs = read_docs(p)
    assert docs[0] == {"id": content_id(text), "chunks": [{"suffix": c, "latent": None} for c in chunk_text(text)]}
    assert docs[1] == {"id": "7", "chunks": [{"suffix": "x", "latent": None}, {"suffix": "y", "latent": "z"}]}
    assert docs[2]["id"] == content_id("Other doc.")


BAD = [("not json", "Expecting value"), ("[1, 2]", "JSON object"), ('{"title": "x"}', '"text" or "chunks"'),
       ('{"text": ""}', "non-empty"), ('{"chunks": "abc"}', "non-empty list"), ('{"chunks": [{"latent": "z"}]}',
       'string "suffix"'), ('{"chunks": [{"suffix": "a", "latent": 3}]}', "latent"), (b'{"text": "\xff"}', "utf-8"),
       ('{"chunks": [{"suffix": "a", "latent_ids": [1]}]}', "latent_ids"),
       ('{"chunks": [{"suffix": "a", "latent": "z", "latent_ids": [-1]}]}', "latent_ids")]


@pytest.mark.parametrize("bad,msg", BAD)
def test_malformed_line_reported(tmp_path, bad, msg):
    p = tmp_path / "c.jsonl"
    write_lines(p, ['{"id": "g1", "text": "Good. Doc."}', '{"text": "Another good one."}', bad])
    with pytest.raises(ValueError, match=f"{msg}.*\\(.*c.jsonl:3\\)$"):
        read_docs(p)


def test_skip_bad_counts(tmp_path, capsys):
    p = tmp_path / "c.jsonl"
    lines = ['{"id": "g1", "text": "Good. Doc."}'] + [b for b, _ in BAD] + ['{"text": "Last good."}']
    write_lines(p, lines)
    stats = {}
    docs = read_docs(p, skip_bad=True, stats=stats)
    assert [d["id"] for d in docs] == ["g1", content_id("Last good.")]
    assert stats["skipped"] == len(BAD) and stats["skipped_lines"] == list(range(2, 2 + len(BAD)))
    assert f"skipped {len(BAD)} malformed line(s)" in capsys.readouterr().err


# ----------------------------------------------------------------------------- prepare CLI

def test_prepare_cli(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    write_lines(src, [json.dumps({"text": many_sentences(30)}), "garbage",
                      json.dumps({"id": "t", "chunks": [{"suffix": "Hi. ", "latent": "greet"}, {"suffix": "Bye."}]})])
    out = tmp_path / "ds"
    with pytest.raises(SystemExit) as e:
        prepare_main(["--corpus", str(src), "--out", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and "in.jsonl:2" in err and not out.exists()
    m = prepare_main(["--corpus", str(src), "--out", str(out), "--skip-bad", "--max-chunk-tokens", "40"])
    docs = read_docs(out / "docs.jsonl")
    assert docs == read_docs(src, skip_bad=True, tok=get_tokenizer("bytes"), max_tokens=40)
    assert json.loads((out / "manifest.json").read_text()) == m
    c = m["counts"]
    assert (c["docs"], c["latents"], c["latent_tokens"]) == (2, 1, len("greet"))
    assert c["chunks"] == sum(len(d["chunks"]) for d in docs)
    assert c["tokens"] == len(many_sentences(30).encode()) + len("Hi. Bye.")
    assert c["max_chunk_tokens"] <= 40 and c["chunks_over_budget"] == 0
    assert m["tokenizer"] == "bytes" and m["source"]["skipped_lines"] == 1
    assert m["chunking"]["max_chunk_tokens"] == 40 and m["source"]["path"] == str(src)


def test_repeated_documents_are_kept_with_distinct_ids(tmp_path, capsys):
    """Real corpora repeat documents: each repeat is kept under '<id>#<occurrence>' and the repeats are counted."""
    p = tmp_path / "c.jsonl"
    write_lines(p, ['{"text": "Same doc."}', '{"id": "a", "text": "One."}', '{"id": "a#2", "text": "Taken id."}',
                    '{"text": "Same doc."}', '{"id": "a", "text": "One."}', '{"text": "Same doc."}'])
    stats = {}
    docs = read_docs(p, stats=stats)
    h = content_id("Same doc.")
    assert [d["id"] for d in docs] == [h, "a", "a#2", f"{h}#2", "a#3", f"{h}#3"]  # a#2 was taken: a#3
    assert [d["chunks"][0]["suffix"] for d in docs[3:]] == ["Same doc.", "One.", "Same doc."]
    assert stats["repeated"] == 3 and "3 repeated document(s)" in capsys.readouterr().err
    write_docs(tmp_path / "out.jsonl", docs)  # written with their ids, they read back as they are
    assert read_docs(tmp_path / "out.jsonl") == docs


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_outputs_honour_the_umask(tmp_path, mask):
    from data.corpus import write_atomic
    old = os.umask(mask)
    try:
        write_atomic(tmp_path / "f.txt", "x")
        open(tmp_path / "plain.txt", "w").close()
    finally:
        os.umask(old)
    mode = os.stat(tmp_path / "f.txt").st_mode & 0o777
    assert mode == 0o666 & ~mask == os.stat(tmp_path / "plain.txt").st_mode & 0o777


def test_latent_ids_are_used_exactly_and_checked(tmp_path):
    """A latent's token ids survive a write and a read and are what encode_doc gives, even where its text does
    not round-trip (half a UTF-8 character, a special token); stale ids are refused."""
    tok = get_tokenizer("bytes")
    ids = [tok.encode("é")[0], tok.prior] + tok.encode("ok")  # the first byte of 'é' alone, then <|prior|>
    text = tok.decode(ids)
    assert tok.encode(text) != ids  # the text alone would train on other tokens
    doc = {"id": "d", "chunks": [{"suffix": "X.", "latent": text, "latent_ids": ids}, {"suffix": "Y.", "latent": None}]}
    write_docs(tmp_path / "l.jsonl", [doc])
    back = read_docs(tmp_path / "l.jsonl")
    assert back == [doc] and layout.encode_doc(tok, back[0])["z"] == [ids, None]
    with pytest.raises(ValueError, match="do not decode"):
        layout.encode_doc(tok, {"id": "d", "chunks": [{"suffix": "X", "latent": "other", "latent_ids": ids}]})
    with pytest.raises(ValueError, match="outside"):
        layout.encode_doc(tok, {"id": "d", "chunks": [{"suffix": "X", "latent": "?", "latent_ids": [10**6]}]})


@pytest.mark.parametrize("argv, msg", [
    (["--corpus", "EMPTY"], "holds no documents (--corpus)"),
    (["--corpus", "/nonexistent.jsonl"], "no such file (--corpus)"),
    (["--corpus", "GOOD", "--max-chunk-tokens", "0"], "(--max-chunk-tokens)"),
    (["--corpus", "GOOD", "--mean-sentences", "nan"], "(--mean-sentences)"),
    (["--corpus", "GOOD", "--max-sentences", "0"], "(--max-sentences)"),
    (["--corpus", "GOOD", "--tokenizer", "gpt2", "--bpe-dir", "/nonexistent"], "(--tokenizer gpt2, --bpe-dir)"),
    (["--corpus", "GOOD", "--world"], "not allowed with argument"),
    (["--corpus", "GOOD", "--out", "FILE"], "exists and is not a directory (--out)"),
    (["--corpus", "DIR"], "is a directory; --corpus takes a JSONL file (--corpus)"),
    (["--corpus", "GOOD", "--workers", "100000"], "the extra ones would only queue (--workers)"),
    (["--corpus", "GOOD", "--mean-sentences", "30"], "exceeds --max-sentences 20, the cap on every chunk"),
])
def test_prepare_refuses_bad_input_before_writing(tmp_path, capsys, argv, msg):
    files = {"EMPTY": tmp_path / "e.jsonl", "GOOD": tmp_path / "g.jsonl", "FILE": tmp_path / "g.jsonl", "DIR": tmp_path}
    files["EMPTY"].write_text("\n")
    files["GOOD"].write_text('{"text": "Fine."}\n')
    out = tmp_path / "ds"
    with pytest.raises(SystemExit) as e:
        prepare_main(["--out", str(out), *[str(files.get(a, a)) for a in argv]])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and msg in err and err.count("\n") == 1, err
    assert not out.exists()


def test_scan_docs_streams_what_read_docs_returns(tmp_path):
    """scan_docs yields read_docs' documents (chunking, repeated ids) one at a time: a bad line is met only when
    the stream reaches it, named by file:line; skipped with skip_bad, with the counts in stats at the end."""
    from data.corpus import scan_docs
    p = tmp_path / "c.jsonl"
    write_lines(p, [json.dumps({"id": "a", "text": "One. Two three. Four!"}), "",
                     json.dumps({"id": "a", "chunks": [{"suffix": "x", "latent": "z"}]}),
                     json.dumps({"text": "Plain text. More text."})])
    kw = dict(tok=get_tokenizer("bytes"), max_tokens=8)
    assert list(scan_docs(p, **kw)) == read_docs(p, **kw)
    assert [d["id"] for d in scan_docs(p)] == ["a", "a#2", content_id("Plain text. More text.")]
    with open(p, "ab") as f:
        f.write(b'{"text": 5}\n')
    docs = scan_docs(p)
    assert next(docs)["id"] == "a"  # the first document, before the bad line is read
    with pytest.raises(ValueError, match=r"c\.jsonl:5\)"):
        list(docs)
    stats = {}
    assert len(list(scan_docs(p, skip_bad=True, stats=stats))) == 3
    assert (stats["skipped"], stats["skipped_lines"], stats["repeated"]) == (1, [5], 1)


def test_write_docs_streams_into_a_temp_file(tmp_path):
    """write_docs takes any iterable and writes it line by line to a temp file beside the target: while it
    writes, the old file is whole; a failure mid-stream leaves the old file and no temp file."""
    p, old = tmp_path / "d.jsonl", [{"id": "old", "chunks": [{"suffix": "o", "latent": None}]}]
    write_docs(p, old)
    seen = []

    def docs(fail=False):
        for i in range(3):
            seen.append((read_docs(p), sorted(os.listdir(tmp_path))))
            if fail and i == 2:
                raise RuntimeError("killed")
            yield {"id": f"n{i}", "chunks": [{"suffix": f"new {i}", "latent": "z" if i else None}]}

    write_docs(p, docs())
    assert [d["id"] for d in read_docs(p)] == ["n0", "n1", "n2"] and os.listdir(tmp_path) == ["d.jsonl"]
    assert len(seen) == 3 and all(len(names) == 2 for _, names in seen)  # the temp file beside it while writing
    write_docs(p, old)
    with pytest.raises(RuntimeError):
        write_docs(p, docs(fail=True))
    assert read_docs(p) == old and os.listdir(tmp_path) == ["d.jsonl"]
    assert all(before == old for before, _ in seen[3:])


def test_odd_documents_are_skipped_and_counted_everywhere(tmp_path, capsys):
    """A document of whitespace only or with a NUL character is skipped and counted on stderr with its lines, by
    read_docs (em.py, train.py) and by data.prepare alike, as repeated documents are kept and counted; a chunk
    with a latent but no text is refused with file:line."""
    p = tmp_path / "c.jsonl"
    write_lines(p, [json.dumps({"text": "Real text. More."}), json.dumps({"text": " \n\t "}),
                    json.dumps({"text": "A NUL\u0000 here."}), json.dumps({"text": "Real text. More."}),
                    json.dumps({"chunks": [{"suffix": "  ", "latent": None}, {"suffix": "\n", "latent": None}]}),
                    json.dumps({"chunks": [{"suffix": "x\u0000", "latent": "why"}]})])
    stats = {}
    docs = read_docs(p, stats=stats)
    err = capsys.readouterr().err
    assert len(docs) == 2 and stats["odd_lines"] == [2, 3, 5, 6] and stats["repeated"] == 1
    assert f"skipped 4 document(s) of whitespace only or with NUL characters in {p} (lines 2, 3, 5, 6)" in err
    assert "1 repeated document(s)" in err
    m = prepare_main(["--corpus", str(p), "--out", str(tmp_path / "ds"), "--workers", "1"])
    err = capsys.readouterr().err
    assert m["counts"]["docs"] == 2 and m["source"]["odd_docs"] == 4 and "(lines 2, 3, 5, 6)" in err
    write_lines(p, [json.dumps({"text": "Real text."}), json.dumps({"chunks": [{"suffix": " ", "latent": "z"}]})])
    with pytest.raises(ValueError, match=r'a chunk with a "latent" needs text in its "suffix" \(.*c\.jsonl:2\)'):
        read_docs(p)


def test_out_lock_one_holder_stale_locks_taken_released_on_error(tmp_path):
    """out/LOCK holds the holder's pid: a second taker is refused naming it (this test's own pid and a sleeping
    process count as live); a dead pid's LOCK is taken over; the lock goes when the block ends, by an exception
    too, and a directory the lock created is removed again when left empty."""
    import subprocess
    import sys
    from data.corpus import out_lock
    out = tmp_path / "a" / "out"
    with out_lock(str(out)) as path:
        assert json.loads(open(path).read())["pid"] == os.getpid()
        with pytest.raises(ValueError, match=rf"in use by process {os.getpid()} .*\(--out\)"):
            with out_lock(str(out)):
                pass
        assert os.path.exists(path)  # the refused taker left the holder's lock alone
    assert not (tmp_path / "a").exists()  # created by the lock, empty again: removed
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        out.mkdir(parents=True)
        (out / "kept.txt").write_text("x")
        import socket
        host = socket.gethostname()
        (out / "LOCK").write_text(json.dumps({"pid": sleeper.pid, "host": host}))
        with pytest.raises(ValueError, match=f"in use by process {sleeper.pid}"):
            with out_lock(str(out)):
                pass
        assert json.loads((out / "LOCK").read_text())["pid"] == sleeper.pid
        (out / "LOCK").write_text(json.dumps({"pid": dead.pid, "host": host}))  # a killed run's lock
        with pytest.raises(RuntimeError):
            with out_lock(str(out)) as path:
                assert json.loads(open(path).read())["pid"] == os.getpid()
                raise RuntimeError("the run failed")
        assert sorted(os.listdir(out)) == ["kept.txt"]  # released on the error; the directory stays
    finally:
        sleeper.kill()
        sleeper.wait()
