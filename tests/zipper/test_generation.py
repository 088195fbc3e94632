"""Generation invariants: cached == uncached, batched == one-by-one, beam(1) == greedy, modality switching."""
from __future__ import annotations

import pytest
import torch

from tests.conftest import open_gates, tiny_tower
from zipper import Segment, ZipperModel
from zipper.generation import pick_next


@pytest.fixture(params=[[], [[4], [11, 12]]], ids=["bos", "bos+prefix"])
def model(request):
    """Every invariant holds with plain BOS starts and with forced prefixes (speech [4], text [11, 12])."""
    speech = tiny_tower("llama", "speech", vocab=40, hidden=32, layers=4, seed=1, init_std=0.4)
    text = tiny_tower("gpt_neox", "text", vocab=56, hidden=48, layers=3, seed=2, init_std=0.4)
    m = ZipperModel.from_towers([speech, text], directions=["speech->text", "text->speech"],
                                cross_attention_interval=[1, 1], prefix_ids=request.param)
    open_gates(m, 1.0, block_scale=30.0)  # the prompt must influence what is generated, or these tests prove nothing
    with torch.no_grad():  # EOS wins wherever token 45 (speech: 11) would: sequences end at varied lengths
        for tower, like in ((text, 45), (speech, 11)):
            head = tower.model.get_output_embeddings().weight
            head[tower.eos_token_id] = head[like] * 1.05
    return m


def _speech(b, t, seed):
    return torch.randint(3, 40, (b, t), generator=torch.Generator().manual_seed(seed))


def test_generation_depends_on_prompt(model):
    out = model.generate([Segment("speech", _speech(6, 8, 0))], ["text"], max_new_tokens=16)[0]
    assert len({tuple(row[m.bool()].tolist()) for row, m in zip(out.input_ids, out.attention_mask)}) > 1
    assert len(set(out.attention_mask.sum(1).tolist())) > 1  # and rows stop at different lengths


@pytest.mark.parametrize("outputs,n", [(["text"], 12), (["text", "speech"], [6, 8]), (["speech"], 10)])
def test_cached_equals_uncached(model, outputs, n):
    prompt = [Segment("speech", _speech(3, 7, 2))] if outputs[0] == "text" else \
        [Segment("text", torch.randint(3, 56, (3, 5), generator=torch.Generator().manual_seed(3)))]
    cached = model.generate(prompt, outputs, max_new_tokens=n)
    uncached = model.generate(prompt, outputs, max_new_tokens=n, use_cache=False)
    for c, u in zip(cached, uncached):
        assert torch.equal(c.input_ids, u.input_ids) and torch.equal(c.attention_mask, u.attention_mask)


def test_cached_logits_match_full_forward(model):
    """Step-by-step logits of the cached path equal one full forward over the generated sequence."""
    prompt = [Segment("speech", _speech(2, 6, 4))]
    out = model.generate(prompt, ["text"], max_new_tokens=6)[0]
    start = model.start_ids("text")  # BOS (+ prefix): forced, never part of the output
    full = torch.cat([start.expand(2, -1), out.input_ids], 1)
    mask = torch.cat([torch.ones(2, len(start), dtype=torch.long), out.attention_mask], 1)
    logits = model(prompt + [Segment("text", full, mask)]).logits[1]
    # Greedy: each generated token is the argmax of the full-forward logits at the previous position.
    pred = logits[:, len(start) - 1:-1].argmax(-1)
    real = out.attention_mask.bool()
    assert torch.equal(pred[real], out.input_ids[real])


def test_batched_equals_one_by_one(model):
    lengths = [9, 4, 7]
    speech = [_speech(1, n, 10 + i) for i, n in enumerate(lengths)]
    width = max(lengths)
    batch = torch.cat([torch.cat([s, torch.zeros(1, width - s.shape[1], dtype=torch.long)], 1) for s in speech])
    mask = torch.tensor([[1] * n + [0] * (width - n) for n in lengths])
    together = model.generate([Segment("speech", batch, mask)], ["text"], max_new_tokens=10)[0]
    for i, s in enumerate(speech):
        alone = model.generate([Segment("speech", s)], ["text"], max_new_tokens=10)[0]
        n = int(alone.attention_mask.sum())
        assert int(together.attention_mask[i].sum()) == n
        assert torch.equal(together.input_ids[i, :n], alone.input_ids[0, :n])


def test_beam_one_equals_greedy(model):
    prompt = [Segment("speech", _speech(2, 8, 5))]
    greedy = model.generate(prompt, ["text"], max_new_tokens=10)[0]
    beam = model.generate(prompt, ["text"], max_new_tokens=10, num_beams=1)[0]
    n = greedy.input_ids.shape[1]
    assert torch.equal(beam.input_ids[:, :n], greedy.input_ids)


def test_beam_search_sees_the_prompt_with_or_without_use_cache(model):
    prompt = [Segment("speech", _speech(2, 8, 5))]
    a = model.generate(prompt, ["text"], max_new_tokens=10, num_beams=3)[0]
    b = model.generate(prompt, ["text"], max_new_tokens=10, num_beams=3, use_cache=False)[0]
    assert torch.equal(a.input_ids, b.input_ids)


def test_beam_search_scores_at_least_greedy(model):
    """With length_penalty=0 beam search maximises total log-prob: never below greedy's sequence."""
    prompt = [Segment("speech", _speech(1, 8, 6))]
    text = model.tower("text")

    @torch.no_grad()
    def logprob(seg):
        start = model.start_ids("text")[None]
        ids = torch.cat([start, seg.input_ids[:, seg.attention_mask[0].bool()], torch.tensor([[text.eos_token_id]])], 1)
        lp = model(prompt + [Segment("text", ids)]).logits[1][:, start.shape[1] - 1:-1].log_softmax(-1)
        return float(lp.gather(-1, ids[:, start.shape[1]:, None]).sum())

    greedy = model.generate(prompt, ["text"], max_new_tokens=30)[0]
    beam = model.generate(prompt, ["text"], max_new_tokens=30, num_beams=4, length_penalty=0.0)[0]
    if greedy.attention_mask.sum() < 30:  # greedy ended with EOS: comparable complete hypotheses
        assert logprob(beam) >= logprob(greedy) - 1e-4


def _text_prompt(b, t, seed):
    return [Segment("text", torch.randint(3, 56, (b, t), generator=torch.Generator().manual_seed(seed)))]


@pytest.mark.parametrize("output", ["speech", "text"])
def test_guided_cached_equals_uncached(model, output):
    prompt = _text_prompt(3, 5, 5) if output == "speech" else [Segment("speech", _speech(3, 7, 2))]
    cached = model.generate(prompt, [output], max_new_tokens=10, guidance=2.0)[0]
    uncached = model.generate(prompt, [output], max_new_tokens=10, guidance=2.0, use_cache=False)[0]
    assert torch.equal(cached.input_ids, uncached.input_ids)
    assert torch.equal(cached.attention_mask, uncached.attention_mask)


def test_guidance_follows_the_zip_away_from_the_bare_tower(model):
    """Each guided greedy token is the argmax of (1 + w) log p_zip - w log p_tower, where p_tower is the HF
    tower's own forward (no zip), both over the generated prefix; and guidance changes what is generated."""
    prompt, w = _text_prompt(2, 6, 6), 1.5
    out = model.generate(prompt, ["speech"], max_new_tokens=8, guidance=w)[0]
    plain_out = model.generate(prompt, ["speech"], max_new_tokens=8)[0]
    assert not torch.equal(out.input_ids, plain_out.input_ids)
    start = model.start_ids("speech")
    full = torch.cat([start.expand(2, -1), out.input_ids], 1)
    mask = torch.cat([torch.ones(2, len(start), dtype=torch.long), out.attention_mask], 1)
    zip_lp = model(prompt + [Segment("speech", full, mask)]).logits[1].float().log_softmax(-1)
    tower_lp = model.tower("speech").model(input_ids=full, attention_mask=mask).logits.float().log_softmax(-1)
    pred = ((1 + w) * zip_lp - w * tower_lp)[:, len(start) - 1:-1].argmax(-1)
    real = out.attention_mask.bool()
    assert torch.equal(pred[real], out.input_ids[real])


def test_guidance_is_a_no_op_at_init():
    """Zero gates: the zip is its tower, so guiding against the tower changes nothing."""
    speech = tiny_tower("llama", "speech", vocab=40, hidden=32, layers=2, seed=1, init_std=0.4)
    text = tiny_tower("llama", "text", vocab=56, hidden=32, layers=2, seed=2, init_std=0.4)
    model = ZipperModel.from_towers([speech, text], directions=["text->speech"], cross_attention_interval=[1, 1])
    prompt = _text_prompt(3, 5, 7)
    a = model.generate(prompt, ["speech"], max_new_tokens=12)[0]
    b = model.generate(prompt, ["speech"], max_new_tokens=12, guidance=3.0)[0]
    assert torch.equal(a.input_ids, b.input_ids)


def test_guidance_errors(model):
    prompt = _text_prompt(1, 4, 0)
    for w in (-0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="guidance must be"):
            model.generate(prompt, ["speech"], guidance=w)
    with pytest.raises(ValueError, match="beam search"):
        model.generate(prompt, ["speech"], guidance=1.0, num_beams=2)
    with pytest.raises(ValueError, match="neither in the prompt"):
        model.generate(prompt + [Segment("speech", _speech(1, 3, 1))], ["speech"], guidance=1.0)
    with pytest.raises(ValueError, match="neither in the prompt"):
        model.generate(prompt, ["speech", "speech"], guidance=1.0)


def test_sampling_is_seeded_and_respects_top_k():
    logits = torch.tensor([[0.0, 5.0, 4.0, -1.0]])
    draws = {int(pick_next(logits, True, top_k=2, generator=torch.Generator().manual_seed(s))) for s in range(40)}
    assert draws <= {1, 2} and len(draws) == 2
    draws = {int(pick_next(logits, True, top_p=0.5, generator=torch.Generator().manual_seed(s))) for s in range(20)}
    assert draws == {1}
    a = pick_next(logits.repeat(5, 1), True, generator=torch.Generator().manual_seed(0))
    b = pick_next(logits.repeat(5, 1), True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


def test_top_p_keeps_the_smallest_prefix_reaching_it_and_tiny_temperatures_pick_the_best():
    logits = torch.tensor([[0.6, 0.3, 0.1]]).log()
    draws = {int(pick_next(logits, True, top_p=0.6, generator=torch.Generator().manual_seed(s))) for s in range(200)}
    assert draws == {0}  # 0.6 alone reaches top_p = 0.6: nothing more is kept
    draws = {int(pick_next(logits, True, top_p=0.61, generator=torch.Generator().manual_seed(s))) for s in range(200)}
    assert draws == {0, 1}
    for t in (1e-39, 1e-30):  # 5 / 1e-39 overflows float32: before, NaN probabilities and an error
        assert int(pick_next(torch.tensor([[5.0, 1.0, -2.0]]), True, temperature=t)) == 0


def test_generation_argument_errors(model):
    prompt = [Segment("speech", _speech(1, 4, 0))]
    with pytest.raises(ValueError, match="beam"):
        model.generate(prompt, ["text", "speech"], num_beams=2)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(prompt, ["text"], max_new_tokens=[3, 4])
    with pytest.raises(ValueError, match="temperature"):
        model.generate(prompt, ["text"], do_sample=True, temperature=0.0)
    bad = [dict(max_new_tokens=0), dict(max_new_tokens=-1), dict(max_new_tokens=3.5), dict(max_new_tokens=True),
           dict(num_beams=0), dict(do_sample=True, top_p=1.5), dict(do_sample=True, top_p=0.0),
           dict(do_sample=True, top_k=-2), dict(do_sample=True, temperature=float("nan"))]
    for kwargs in bad:
        with pytest.raises(ValueError, match="max_new_tokens|num_beams|top_k|temperature"):
            model.generate(prompt, ["text"], **kwargs)
    with pytest.raises(ValueError, match="non-empty list"):
        model.generate(prompt, "text")  # a string is not a list of modalities


def test_single_decoder_generation_argument_errors():
    from zipper.baseline import SingleDecoder

    model = SingleDecoder(tiny_tower("llama", "text", vocab=56, hidden=32, layers=2, seed=3), n_units=20)
    prompt = [Segment("speech", torch.randint(3, 23, (1, 5)))]
    for kwargs in [dict(max_new_tokens=0), dict(do_sample=True, top_p=2.0), dict(num_beams=0)]:
        with pytest.raises(ValueError, match="max_new_tokens|top_k|num_beams"):
            model.generate(prompt, ["text"], **kwargs)
    assert model.generate(prompt, ["text"], max_new_tokens=2)[0].input_ids.shape[1] <= 2
    with pytest.raises(ValueError, match="guidance needs a zipped model"):
        model.generate(prompt, ["text"], guidance=1.0)


@pytest.fixture(params=[[], [[4], [11, 12]]], ids=["bos", "bos+prefix"])
def bos_is_eos_model(request):
    """A GPT-2 text tower whose BOS id is its EOS id (as GPT-2's and Pythia's <|endoftext|>)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from towers import Tower

    torch.manual_seed(2)
    cfg = GPT2Config(vocab_size=56, n_embd=48, n_layer=3, n_head=4, bos_token_id=3, eos_token_id=3, pad_token_id=0,
                     initializer_range=0.4)
    text = Tower(GPT2LMHeadModel(cfg).eval(), "text")
    assert text.bos_token_id == text.eos_token_id == 3
    speech = tiny_tower("llama", "speech", vocab=40, hidden=32, layers=4, seed=1, init_std=0.4)
    m = ZipperModel.from_towers([speech, text], directions=["speech->text", "text->speech"],
                                cross_attention_interval=[1, 1], prefix_ids=request.param)
    open_gates(m, 1.0, block_scale=100.0)
    with torch.no_grad():  # EOS wins wherever token 23 would: rows end at varied lengths
        head = text.model.get_output_embeddings().weight
        head[3] = head[23] * 1.05
    return m


def _greedy_by_full_forwards(model, prompt, modality, max_new):
    """Reference greedy decode of one row: a full forward over the whole sequence at every step."""
    eos = model.tower(modality).eos_token_id
    ids = model.start_ids(modality)[None]
    out = []
    with torch.no_grad():
        for _ in range(max_new):
            nxt = int(model(prompt + [Segment(modality, ids)]).logits[-1][0, -1].argmax())
            if nxt == eos:
                break
            out.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
    return out


def test_generation_when_bos_is_the_eos_id(bos_is_eos_model):
    """The forced BOS is never taken for the EOS: cached, uncached and beam paths generate what a greedy
    decode by full forwards does (before the fix every output was empty)."""
    model = bos_is_eos_model
    speech = _speech(6, 8, 0)
    prompt = [Segment("speech", speech)]
    cached = model.generate(prompt, ["text"], max_new_tokens=8)[0]
    uncached = model.generate(prompt, ["text"], max_new_tokens=8, use_cache=False)[0]
    assert torch.equal(cached.input_ids, uncached.input_ids)
    assert torch.equal(cached.attention_mask, uncached.attention_mask)
    refs = [_greedy_by_full_forwards(model, [Segment("speech", speech[i:i + 1])], "text", 8) for i in range(6)]
    got = [row[m.bool()].tolist() for row, m in zip(cached.input_ids, cached.attention_mask)]
    assert got == refs
    assert all(refs) and len({len(r) for r in refs}) > 1 and len({tuple(r) for r in refs}) > 1  # rows differ, end early
    beam = model.generate(prompt, ["text"], max_new_tokens=8, num_beams=2)[0]
    assert bool((beam.attention_mask.sum(1) > 0).all())
    # a later output modality sees the generated text: [text, speech] cached == uncached
    a = model.generate(prompt, ["text", "speech"], max_new_tokens=[6, 5])
    b = model.generate(prompt, ["text", "speech"], max_new_tokens=[6, 5], use_cache=False)
    for x, y in zip(a, b):
        assert torch.equal(x.input_ids, y.input_ids) and torch.equal(x.attention_mask, y.attention_mask)
    assert a[0].attention_mask.sum() > 0


def _reference_beam(model, prompt, k, max_new, length_penalty):
    """Plain beam search by full forwards (batch of one), ranking as zipper does, with HF's finalize: when
    the budget runs out before k hypotheses finished, the running beams join them. -> tokens (no start)."""
    eos, start = model.tower("text").eos_token_id, model.start_ids("text").tolist()
    beams, hyps = [(0.0, list(start))], []
    with torch.no_grad():
        for t in range(max_new):
            cands = []
            for score, seq in beams:
                lp = model(prompt + [Segment("text", torch.tensor([seq]))]).logits[-1][0, -1].float().log_softmax(-1)
                top = lp.topk(2 * k)
                cands += [(score + float(v), seq, int(i)) for v, i in zip(top.values, top.indices)]
            cands = sorted(cands, key=lambda c: -c[0])[:2 * k]
            new = []
            for rank, (score, seq, tok) in enumerate(cands):
                if tok == eos:
                    if rank < k:
                        hyps.append((score / (t + 1) ** length_penalty, seq + [eos]))
                elif len(new) < k:
                    new.append((score, seq + [tok]))
            if len(hyps) >= k:
                break
            beams = new
        else:
            hyps += [(score / (len(seq) - len(start)) ** length_penalty, seq) for score, seq in beams]
    return [x for x in max(hyps, key=lambda h: h[0])[1][len(start):] if x != eos]


def _speech_prompts(n, seed):
    g = torch.Generator().manual_seed(seed)
    prompts = []
    for _ in range(n):
        t = int(torch.randint(4, 10, (1,), generator=g))
        prompts.append([Segment("speech", torch.tensor([[1, 4] + torch.randint(3, 40, (t,), generator=g).tolist()
                                                         + [2]]))])
    return prompts


def test_beam_search_weighs_running_beams_when_the_budget_runs_out(model):
    """Some but fewer than k hypotheses finish within the budget: the running beams still compete (as in
    HF's finalize), so a short early-EOS hypothesis no longer beats better running beams. The result is
    the reference beam search's, and its length-normalised log-prob is at least greedy's."""
    text = model.tower("text")
    start = model.start_ids("text").tolist()

    @torch.no_grad()
    def mean_logprob(prompt, tokens, max_new):
        ended = len(tokens) < max_new  # a finished hypothesis has at most max_new - 1 tokens before its EOS
        seq = start + tokens + ([text.eos_token_id] if ended else [])
        lp = model(prompt + [Segment("text", torch.tensor([seq]))]).logits[-1][0].float().log_softmax(-1)
        return sum(float(lp[i, seq[i + 1]]) for i in range(len(start) - 1, len(seq) - 1)) / (len(seq) - len(start))

    def tokens(seg):
        return seg.input_ids[0][seg.attention_mask[0].bool()].tolist()

    k, max_new = 3, 4
    for prompt in _speech_prompts(8, 5):
        beam = tokens(model.generate(prompt, ["text"], max_new_tokens=max_new, num_beams=k, length_penalty=1.0)[0])
        assert beam == _reference_beam(model, prompt, k, max_new, 1.0)
        greedy = tokens(model.generate(prompt, ["text"], max_new_tokens=max_new)[0])
        assert mean_logprob(prompt, beam, max_new) >= mean_logprob(prompt, greedy, max_new) - 1e-4
