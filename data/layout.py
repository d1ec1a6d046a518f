"""THE one definition of BoLT token layouts (Ruan et al. 2025, section 3 / ../shared/docs/BOLT.md).

A document is a list of chunks X_1..X_N, each with an optional latent Z_i. Tokenised once (`encode_doc`), it
is laid out as one training sequence:
  raw        BOS X_1 X_2 ... X_N EOS
  prior      BOS [SoL PRIOR Z_i EoL X_i]...  EOS                      teaches p(Z, X)
  posterior  BOS [SoL EoL X_i SoL POST Z_i EoL]... EOS               teaches q(Z | X)
  random     a fresh fair coin per chunk picks prior or posterior, keyed by (seed, epoch, doc id, chunk)
A chunk without a latent is written `SoL EoL X_i` in the latent layouts (the boundary marker, no thought).

The E-step reads the same definitions: `estep_prompts` gives the posterior prompt
  BOS P_i SoL EoL X_i SoL POST            (P_i = the context, left-truncated to the window)
and the joint-scoring prefix BOS P_i, whose continuation `joint_continuation` is  SoL PRIOR Z EoL X_i.
The context is the one choice of how chunk i sees what came before (`context`): the paper's raw text of up to 3
previous chunks (BOLT.md), or, given their latents, every previous chunk laid out as in training in prior mode,
[SoL PRIOR Z_j EoL X_j]..., which is what the M-step's sequences contain (em.py --estep sequential).
The first chunk gets the same `SoL EoL` boundary marker as every other (the authors' code omits it there, a
train/inference mismatch this layout fixes).
"""
import hashlib

MODES = ("raw", "prior", "posterior", "random")


def encode_doc(tok, doc):
    """{'id', 'chunks': [{'suffix': X, 'latent': Z or None}]} -> {'id', 'x': [ids], 'z': [ids or None]}.
    A chunk's 'latent_ids' (the E-step's sampled tokens) are used as they are: decoding a sample is lossy (a
    split UTF-8 character, a special token) and re-encoding its text would train on tokens nobody scored."""
    chunks = doc["chunks"]
    return {"id": doc["id"], "x": [tok.encode(c["suffix"]) for c in chunks],
            "z": [latent_tokens(tok, c) for c in chunks]}


def latent_tokens(tok, chunk):
    """A chunk's latent as token ids: its 'latent_ids' when present (checked against the text), else the text."""
    ids = chunk.get("latent_ids")
    if ids is None:
        return None if chunk.get("latent") is None else tok.encode(chunk["latent"])
    if any(not 0 <= t < tok.n_vocab for t in ids):
        raise ValueError(f"latent_ids outside the {tok.name} vocabulary [0, {tok.n_vocab})")
    if tok.decode(ids) != chunk.get("latent"):  # stale ids, or another tokenizer's
        raise ValueError(f"latent_ids do not decode to their latent {chunk.get('latent')!r:.60} ({tok.name})")
    return list(ids)


def check_latent_ids(tok, doc, max_len=None, why=""):
    """Refuse (ValueError) a read document whose latents `tok` cannot read: 'latent_ids' outside the vocabulary or
    not decoding to their text (latent_tokens), or a latent of more than max_len tokens (`why`: the rule that
    sets max_len)."""
    for k, c in enumerate(doc["chunks"]):
        try:
            z = latent_tokens(tok, c)
        except ValueError as e:
            raise ValueError(f"chunk {k}: {e}") from None
        if max_len is not None and z is not None and len(z) > max_len:
            raise ValueError(f"chunk {k}: a latent of {len(z)} tokens is longer than {max_len} ({why})")


def latent_marks(tok):
    """The layout marks a thought never contains, banned while one is sampled (sample.generate `banned`): BOS,
    EOS, SoL, PRIOR, POST; a thought ends at EoL. A mark inside a latent would make its training sequence
    ambiguous (a thought inside a thought, a second mode mark, a document end). Sorted ids (BOS = EOS for bytes
    and gpt2)."""
    return sorted({tok.bos, tok.eos, tok.sol, tok.prior, tok.post})


def check_latent_marks(tok, doc):
    """Refuse (ValueError) a read document whose latent holds a layout mark, BOS, EOS, SoL, EoL, PRIOR or POST: as
    an id in its 'latent_ids', or spelled by name in its text (how decode writes a sampled mark)."""
    names = {m: tok.decode([m]) for m in sorted(tok.special_ids)}
    for k, c in enumerate(doc["chunks"]):
        ids = [names[t] for t in c.get("latent_ids") or [] if t in names]
        text = [n for n in names.values() if n in (c.get("latent") or "")]
        if ids or text:
            what = f'"latent_ids" hold the id of {ids[0]}' if ids else f'"latent" spells {text[0]}'
            raise ValueError(f"chunk {k}: its {what}, a layout mark; a thought never contains "
                             f"{', '.join(names.values())}")


def key_int(*parts):
    """A 63-bit integer from a tuple of keys: request ids and RNG seeds that no rank or batch can change."""
    return int.from_bytes(hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest(), "big") >> 1


def coin(seed, epoch, doc_id, chunk):
    """Fair coin keyed by (seed, epoch, doc id, chunk): the same on every rank, process and resume."""
    h = hashlib.blake2b(f"{seed}/{epoch}/{doc_id}/{chunk}".encode(), digest_size=1).digest()
    return h[0] & 1 == 1  # True -> prior mode


def chunk_tokens(tok, x, z, prior):
    """One chunk's tokens in prior (True) or posterior (False) mode."""
    if z is None:
        return [tok.sol, tok.eol] + x
    if prior:
        return [tok.sol, tok.prior] + z + [tok.eol] + x
    return [tok.sol, tok.eol] + x + [tok.sol, tok.post] + z + [tok.eol]


def sequence(tok, edoc, mode, seed=0, epoch=0):
    """The training sequence of one encoded document in the given layout mode."""
    if mode not in MODES:
        raise ValueError(f"unknown layout {mode!r}; choose one of {', '.join(MODES)}")
    out = [tok.bos]
    for i, (x, z) in enumerate(zip(edoc["x"], edoc["z"])):
        if mode == "raw":
            out += x
        else:
            prior = mode == "prior" or (mode == "random" and coin(seed, epoch, edoc["id"], i))
            out += chunk_tokens(tok, x, z, prior)
    return out + [tok.eos]


def sequence_length(doc_id, x_lens, z_lens, mode, seed=0, epoch=0):
    """len(sequence(tok, doc, mode, seed, epoch)) from chunk lengths alone (z length -1 = no latent): what a
    reader needs to skip a document without reading its tokens. Mirrors chunk_tokens' marks: a chunk costs
    2 + |X| without a latent, 3 + |Z| + |X| in prior mode, 5 + |X| + |Z| in posterior mode; + BOS and EOS."""
    if mode not in MODES:
        raise ValueError(f"unknown layout {mode!r}; choose one of {', '.join(MODES)}")
    n = 2 + sum(int(v) for v in x_lens)
    if mode == "raw":
        return n
    for i, nz in enumerate(z_lens):
        if nz < 0:
            n += 2
        else:
            prior = mode == "prior" or (mode == "random" and coin(seed, epoch, doc_id, i))
            n += int(nz) + (3 if prior else 5)
    return n


def context(tok, xs, i, zs=None, n_prev=3):
    """The tokens chunk i is conditioned on: the raw text of up to n_prev previous chunks (zs None: the paper's
    P_i), or every previous chunk laid out in prior mode with its latent zs[j] (a latent None is the no-latent form
    SoL EoL X_j): the document so far exactly as its training row holds it. Not n_prev of them: a training row
    always starts at its document's BOS, so a context cut to the last chunks (BOS, then a result chunk) is one the
    model never saw; with it the E-step picked the gold walk for 24% of second problems, with the whole document
    91% (seed 3; docs/prose_paragraphs.md). The window's budget still left-truncates a long one (prefix)."""
    if zs is None:
        return [t for x in xs[max(0, i - n_prev):i] for t in x]
    return [t for j in range(i) for t in chunk_tokens(tok, xs[j], zs[j], True)]


def prefix(tok, xs, i, budget, n_prev=3, zs=None):
    """BOS + the context of chunk i (`context`), left-truncated to `budget` tokens (BOS kept)."""
    p = context(tok, xs, i, zs, n_prev)
    return [tok.bos] + p[max(0, len(p) - budget):]  # max(0, .): a budget above len(p) keeps all of p


def estep_prompts(tok, xs, i, max_latent, block_size, prefix_budget=None, n_prev=3, zs=None):
    """Posterior prompt and joint prefix for chunk i of a document with raw chunk tokens xs (and, for the
    sequential E-step, the previous chunks' latents zs: see `context`).
    Budgets guarantee prompt + max_latent <= block_size (max_latent counts the sampled EoL) and therefore
    joint prefix + SoL PRIOR Z EoL X_i <= block_size. Returns (prompt, joint_prefix, x_i, dropped) where
    dropped = (prefix tokens dropped from the left, X_i tokens dropped from the right) by the budget."""
    x = xs[i]
    room = block_size - max_latent - 5  # BOS, SoL EoL, SoL POST around P_i and X_i
    if room < 1:
        raise ValueError(f"block_size {block_size} leaves no room for a chunk with max_latent {max_latent}")
    x_cut = x[:room]
    full = len(context(tok, xs, i, zs, n_prev))
    budget = min(room - len(x_cut), full if prefix_budget is None else prefix_budget)
    p = prefix(tok, xs, i, budget, n_prev, zs)
    prompt = p + [tok.sol, tok.eol] + x_cut + [tok.sol, tok.post]
    return prompt, p, x_cut, (full - (len(p) - 1), len(x) - len(x_cut))


def raw_pair(tok, xs, i, max_latent, block_size):
    """A raw model's scored pair for chunk i, (P_i, X_i), cut by the E-step's budgets: raw NLL scores exactly the
    tokens the latent bound does."""
    _, p, x, _ = estep_prompts(tok, xs, i, max_latent, block_size)
    return p, x


def joint_continuation(tok, z, x):
    """The scored continuation SoL PRIOR Z EoL X_i (z without its EoL; a capped latent gets EoL here)."""
    return [tok.sol, tok.prior] + list(z) + [tok.eol] + list(x)


# The joint continuation starts with the two marks SoL PRIOR (MODE_MARKS of its scored tokens). SoL ends the
# previous chunk X_{i-1}: it is part of raw text's chunking, so a bound on raw text scores it. PRIOR is the
# layout's training coin (prior rather than posterior mode), not text: BOLT.md's log p counts both; the
# PRIOR-conditional log p (em.py nll_np_k{K}) leaves out PRIOR alone; the E-step weighs without both (one constant
# per chunk either way: the same pick).
MODE_MARKS = 2


def think_prompt(tok, x):
    """A question laid out as in training, then a thought to write: BOS [SoL PRIOR EoL X] SoL PRIOR.
    x: the question's tokens, or a list of its chunks' tokens (a question the chunker split), each chunk laid
    out with an empty thought. The model continues with Z, EoL, then the answer text."""
    chunks = x if x and isinstance(x[0], list) else [x]
    return think_layout(tok, [list(c) for c in chunks] + [[]], [[]] * len(chunks))


def think_layout(tok, chunks, thoughts):
    """A question laid out as training lays out a document in prior mode, the thoughts written so far in place:
    BOS [SoL PRIOR Z_j EoL X_j] for j < len(thoughts), then SoL PRIOR while a chunk is left (its thought is to
    write next). With every chunk's thought given, it ends in the last chunk's text, which the answer continues.
    chunks: token lists, the last one the start of the chunk that holds the answer (a training document's latent
    comes before the chunk holding its result; [] when the answer opens a chunk of its own)."""
    done = [t for x, z in zip(chunks, thoughts) for t in chunk_tokens(tok, list(x), list(z), True)]
    return [tok.bos] + done + ([tok.sol, tok.prior] if len(thoughts) < len(chunks) else [])


def explain_prompt(tok, x):
    """The posterior prompt for a text with no prefix: BOS SoL EoL X SoL POST (what the E-step asks for chunk 0)."""
    return [tok.bos, tok.sol, tok.eol] + list(x) + [tok.sol, tok.post]


def segments(tok, ids):
    """A laid-out token sequence -> [(kind, ids, closed)]: kind 'text', 'thought' (SoL PRIOR Z EoL: a thought
    before its text) or 'thought (posterior)' (SoL POST Z EoL: about the text before it); closed is False for a
    thought cut before its EoL. BOS/EOS and the empty boundary `SoL EoL` (or a last, stopping SoL) end a text piece
    and are not shown; empty thoughts (the think prompt's question chunk) are dropped."""
    out, text, i, n = [], [], 0, len(ids)
    kinds = {tok.prior: "thought", tok.post: "thought (posterior)"}
    while i < n:
        t, nxt = ids[i], ids[i + 1] if i + 1 < n else None
        if t == tok.sol and nxt in kinds:
            j = i + 2
            while j < n and ids[j] != tok.eol:
                j += 1
            if j > i + 2 or j == n:
                out += [("text", text, True)] if text else []
                out.append((kinds[nxt], ids[i + 2:j], j < n))
                text = []
            i = j + 1
        elif t in (tok.bos, tok.eos) or (t == tok.sol and nxt in (tok.eol, None)):
            out += [("text", text, True)] if text else []
            text, i = [], i + (2 if nxt == tok.eol and t == tok.sol else 1)
        else:
            text.append(t)  # anything else, a stray special included, prints as decode() spells it
            i += 1
    return out + ([("text", text, True)] if text else [])


def inline_latents(doc):
    """A --teacher-latents document as raw text, each chunk's latent written before the chunk it explains (the
    prior layout's order, without its marks): the raw arm 'inline' for a warm set whose base text format is
    unknown (the built-in world writes its own, in its base text's format: data/world.py warm_inline)."""
    return {"id": doc["id"], "chunks": [{"suffix": (c["latent"] + " " if c["latent"] else "") + c["suffix"],
                                         "latent": None} for c in doc["chunks"]]}
