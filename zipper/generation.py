"""Generation for a ZipperModel: greedy, sampling (temperature / top-k / top-p) and beam search.

The prompt segments (e.g. the speech to transcribe) run once; each zip block's keys and values over
them are computed once. The generating tower then decodes with its own KV cache, starting from its
BOS token and the config's forced prefix (``model.start_ids``) and stopping at its EOS, after which
the next output modality (if any) starts and attends to everything before it, the segment just
generated included: [text, speech] writes text, then speaks it, as in the paper.

``use_cache=False`` re-runs the full forward over all segments at each step: the slow reference
that the cached path must match.

``guidance`` w > 0 is classifier-free guidance with the generating tower itself as the unconditional
model: next-token log-probs are ``(1 + w) log p(x | sources) - w log p(x)``, where ``p(x)`` is the
bare tower, without its input projection and zip blocks (for a frozen tower, its own prediction). The zip
starts as exactly that tower (zero gates), so a weakly trained zip reads its source only a little;
guidance scales up what it does read, at the price of one more tower forward a step.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import torch

if TYPE_CHECKING:
    from zipper.ctc_prefix import JointCTCScorer
    from zipper.model import Segment, ZipperModel


def check_generation_args(output_modalities, max_new_tokens, do_sample: bool = False, temperature: float = 1.0,
                          top_k: int = 0, top_p: float = 1.0, num_beams: int = 1) -> list[int]:
    """Refuse bad generation settings with a ValueError saying which; -> one token budget per output modality.
    The one check of ZipperModel.generate and the single-decoder baseline's."""
    if isinstance(output_modalities, str) or not output_modalities:
        raise ValueError(f"output_modalities must be a non-empty list of modality names, got {output_modalities!r}")
    if isinstance(max_new_tokens, (list, tuple)):
        budgets = list(max_new_tokens)
    else:
        budgets = [max_new_tokens] * len(output_modalities)
    if len(budgets) != len(output_modalities):
        raise ValueError("give one max_new_tokens per output modality (and at least one output modality)")
    if not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in budgets):
        raise ValueError(f"max_new_tokens must be integers >= 1, got {max_new_tokens!r}")
    if not isinstance(num_beams, int) or num_beams < 1:
        raise ValueError(f"num_beams must be an integer >= 1, got {num_beams!r}")
    if do_sample and not (temperature > 0 and math.isfinite(temperature)):  # NaN fails both
        raise ValueError(f"temperature must be > 0 when sampling, got {temperature}")
    if do_sample and not (isinstance(top_k, int) and top_k >= 0 and 0 < top_p <= 1):
        raise ValueError(f"top_k must be an integer >= 0 (0: off) and top_p in (0, 1], got {top_k!r}, {top_p!r}")
    return budgets


def pick_next(logits: torch.Tensor, do_sample: bool, temperature: float = 1.0, top_k: int = 0,
              top_p: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, V) logits -> (B,) next token ids. The settings were checked once by `check_generation_args`."""
    if not do_sample:
        return logits.argmax(-1)
    logits = logits.float()
    logits = (logits - logits.max(-1, keepdim=True).values) / temperature  # shifted first: a tiny temperature
    # then gives -inf to all but the best tokens, never inf (inf - inf is NaN in the softmax)
    if top_k > 0:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= top_p  # keep the smallest prefix reaching top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(model: "ZipperModel", prompt: Sequence["Segment"], output_modalities: Sequence[str] = ("text",),
             max_new_tokens: int | Sequence[int] = 128, do_sample: bool = False, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, num_beams: int = 1, length_penalty: float = 1.0,
             use_cache: bool = True, generator: torch.Generator | None = None,
             ctc_weight: float = 0.0, guidance: float = 0.0) -> list["Segment"]:
    """Generate one segment per output modality. Returns Segments of generated tokens, without the
    forced start (BOS + prefix) and EOS, right-padded with the tower's pad id; ``attention_mask``
    marks the real tokens.

    ``ctc_weight`` > 0: joint CTC/attention beam search (``num_beams`` >= 1) with the zip's CTC head on
    the prompt (zipper/ctc_prefix.py); needs a ``ctc_directions`` edge into the output modality.

    ``guidance`` > 0: classifier-free guidance against the output tower alone (see the module docstring);
    greedy or sampling, for output modalities that are not in the prompt."""
    from zipper.model import Segment

    model.check_segments(prompt)
    prompt = model.place(prompt)
    max_new_tokens = check_generation_args(output_modalities, max_new_tokens, do_sample, temperature, top_k, top_p,
                                           num_beams)
    if not 0.0 <= ctc_weight <= 1.0:
        raise ValueError(f"ctc_weight must be in [0, 1], got {ctc_weight}")
    if not (guidance >= 0 and math.isfinite(guidance)):  # NaN fails both
        raise ValueError(f"guidance must be a finite number >= 0, got {guidance}")
    if guidance and (num_beams > 1 or ctc_weight):
        raise ValueError("guidance works with greedy decoding and sampling, not beam search or ctc_weight")
    if guidance and (any(s.modality in output_modalities for s in prompt)
                     or len(set(output_modalities)) < len(output_modalities)):
        raise ValueError("guidance needs output modalities that are neither in the prompt nor repeated (the "
                         "tower alone would not see its own earlier segment)")
    if (num_beams > 1 or ctc_weight) and (len(output_modalities) > 1 or do_sample):
        raise ValueError("beam search and joint CTC decoding (ctc_weight > 0) support one output modality "
                         "and no sampling")
    for m in output_modalities:
        t = model.tower(m)
        if t.bos_token_id is None or t.eos_token_id is None:
            raise ValueError(f"tower {m!r} needs bos and eos token ids to generate")
    was_training = model.training
    model.eval()
    try:
        batch = prompt[0].input_ids.shape[0]
        segments, outputs = list(prompt), []
        # the prompt runs once; every tower keeps a cache in case it speaks again (beam search always caches)
        cached = use_cache or num_beams > 1 or ctc_weight > 0
        history, tower_state = model.run_segments(prompt, cache_all=True)[1:] if cached else ([], {})
        sampling = dict(do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
        for i, (m, n_new) in enumerate(zip(output_modalities, max_new_tokens)):
            if num_beams > 1 or ctc_weight:
                ctc = _joint_ctc(model, m, history, ctc_weight) if ctc_weight else None
                ids = _beam_search(model, m, history, tower_state, batch, n_new, num_beams, length_penalty, ctc)
            elif use_cache:
                ids = _decode_cached(model, m, history, tower_state, batch, n_new, i + 1 < len(output_modalities),
                                     sampling, guidance)
            else:
                ids = _decode_uncached(model, m, segments, batch, n_new, sampling, guidance)
            tower = model.tower(m)
            n_start = len(model.start_ids(m))
            full = Segment(m, ids, _real_mask(ids, tower.eos_token_id, n_start))  # BOS prefix ... EOS (then padding)
            full.input_ids = full.input_ids.masked_fill(~full.mask(), tower.pad_token_id)
            segments.append(full)
            outputs.append(_strip(full, tower, n_start))
        return outputs
    finally:
        model.train(was_training)


def _joint_ctc(model, modality, history, weight):
    """The JointCTCScorer of the prompt segment that a CTC head reads into ``modality``."""
    from zipper.ctc import char_targets, running_char_targets
    from zipper.ctc_prefix import JointCTCScorer

    sources = [d for d in history if d.modality in model._ctc_sources(modality)]
    if not sources:
        raise ValueError(f"ctc_weight > 0 needs a CTC head into {modality!r} (ZipperConfig.ctc_directions, "
                         f"has {model.config.ctc_directions}) and its source segment in the prompt")
    done = sources[-1]
    log_probs = model.ctc_log_probs(done.modality, modality, done)  # (B, M, S + 1)
    tower = model.tower(modality)
    if model.config.ctc_units == "chars":  # the characters of the decoded, normalised text
        def to_symbols(tokens):
            return char_targets([tower.tokenizer.decode(tokens, skip_special_tokens=True)])[0].tolist()

        def running(tokens):  # its last word may still grow: not normalised yet
            return running_char_targets(tower.tokenizer.decode(tokens, skip_special_tokens=True))
        return JointCTCScorer(log_probs, done.mask, to_symbols, weight, running)
    return JointCTCScorer(log_probs, done.mask, lambda tokens: tokens, weight)


def _real_mask(ids: torch.Tensor, eos: int, n_start: int) -> torch.Tensor:
    """(B, T) with the forced start (``n_start`` tokens: BOS + prefix) first: True up to and including the
    first EOS after the start. The start never counts as EOS, even where BOS is the EOS id (GPT-2, Pythia)."""
    is_eos = (ids == eos).long()
    is_eos[:, :n_start] = 0
    after_eos = (is_eos.cumsum(-1) - is_eos) > 0
    return ~after_eos


def _strip(seg: "Segment", tower, n_start: int) -> "Segment":
    """Drop the start (BOS + prefix, ``n_start`` tokens) and EOS; keep right padding with the pad id."""
    from zipper.model import Segment

    ids = seg.input_ids[:, n_start:]
    mask = seg.mask()[:, n_start:] & (ids != tower.eos_token_id)
    return Segment(seg.modality, ids.masked_fill(~mask, tower.pad_token_id), mask.long())


def guided(logits: torch.Tensor, plain: torch.Tensor, w: float) -> torch.Tensor:
    """(B, V) zip logits, (B, V) logits of the tower alone -> (1 + w) log p_zip - w log p_tower."""
    return (1 + w) * logits.float().log_softmax(-1) - w * plain.float().log_softmax(-1)


def _decode_cached(model, modality, history, tower_state, batch, max_new, record, sampling,
                   guidance: float = 0.0) -> torch.Tensor:
    from transformers import DynamicCache

    from zipper.model import _Done

    tower = model.tower(modality)
    memory = model.memory_for(modality, history)  # keys/values over earlier segments: computed once
    cache, past = tower_state.get(modality, (DynamicCache(), None))
    plain_cache = DynamicCache()  # guidance: the tower alone, on the same tokens
    device = tower.device
    step_ids = model.start_ids(modality, device).expand(batch, -1)  # (B, S): BOS + forced prefix
    n_start = step_ids.shape[1]
    step_mask = torch.ones_like(step_ids, dtype=torch.bool)
    tokens, finished, chunks = [step_ids], torch.zeros(batch, dtype=torch.bool, device=device), []
    for _ in range(max_new):
        logits, states = model.tower_forward(modality, step_ids, step_mask, memory, cache, past, record=record)
        if guidance:  # the prompt holds no segment of this modality, so both caches cover the same tokens
            plain, _ = model.tower_forward(modality, step_ids, step_mask, {}, plain_cache, past, record=False,
                                           alone=True)
            logits = guided(logits[:, -1:], plain[:, -1:], guidance)
        chunks.append(states)
        past = step_mask if past is None else torch.cat([past, step_mask], 1)
        nxt = pick_next(logits[:, -1], **sampling)
        nxt = nxt.masked_fill(finished, tower.pad_token_id)
        step_mask = (~finished)[:, None]
        finished = finished | (nxt == tower.eos_token_id)
        step_ids = nxt[:, None]
        tokens.append(step_ids)
        if finished.all():
            break
    ids = torch.cat(tokens, 1)  # (B, S + n)
    if record:  # the last token has not been through the tower yet: later segments attend to it too
        _, states = model.tower_forward(modality, step_ids, step_mask, memory, cache, past, record=True)
        chunks.append(states)
        past = torch.cat([past, step_mask], 1)
        layers = chunks[0].keys()
        history.append(_Done(modality, {j: torch.cat([c[j] for c in chunks], 1) for j in layers},
                             _real_mask(ids, tower.eos_token_id, n_start)))
        tower_state[modality] = (cache, past)
    return ids


def _decode_uncached(model, modality, segments, batch, max_new, sampling, guidance: float = 0.0) -> torch.Tensor:
    from zipper.model import Segment

    tower = model.tower(modality)
    device = tower.device
    ids = model.start_ids(modality, device).expand(batch, -1)  # (B, S)
    n_start = ids.shape[1]
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    for _ in range(max_new):
        mask = _real_mask(ids, tower.eos_token_id, n_start)
        logits = model(list(segments) + [Segment(modality, ids, mask.long())]).logits[-1][:, -1]  # (B, V)
        if guidance:
            plain, _ = model.tower_forward(modality, ids, mask, {}, record=False, alone=True)
            logits = guided(logits, plain[:, -1], guidance)
        nxt = pick_next(logits, **sampling).masked_fill(finished, tower.pad_token_id)
        finished = finished | (nxt == tower.eos_token_id)
        ids = torch.cat([ids, nxt[:, None]], 1)
        if finished.all():
            break
    return ids


def _beam_search(model, modality, history, tower_state, batch, max_new, k, length_penalty,
                 ctc: "JointCTCScorer | None" = None) -> torch.Tensor:
    """Beam search with early stopping (a batch item is done once it has k finished hypotheses). A batch
    item not done when the token budget runs out also weighs its running beams (length-normalised like
    the finished ones), as HF's ``BeamSearchScorer.finalize``.

    With ``ctc`` (joint CTC/attention decoding, zipper/ctc_prefix.py) each beam's ``pre_beam`` best
    tokens by the decoder are rescored by (1 - w) * attention + w * CTC prefix log-probs; without it the
    per-beam top 2k tokens hold the global top 2k, so the search is the plain one."""
    from transformers import DynamicCache

    tower = model.tower(modality)
    eos, pad = tower.eos_token_id, tower.pad_token_id
    memory = model.memory_for(modality, history, repeat=k)
    cache, past = tower_state.get(modality, (DynamicCache(), None))
    if past is not None:
        cache.batch_repeat_interleave(k)
        past = past.repeat_interleave(k, 0)
    device = tower.device
    start = model.start_ids(modality, device)
    seqs = start.expand(batch * k, -1)  # (B*K, t): BOS + forced prefix, then the generated tokens
    att = torch.full((batch, k), float("-inf"), device=device)  # accumulated decoder log-probs
    att[:, 0] = 0.0  # all beams start identical: expand only the first
    scores = att.clone()  # what beams are ranked by: att, or the joint score with ctc
    pre_beam = max(2 * k, 10) if ctc is not None else 2 * k  # candidates a beam for the CTC term to rescore
    done = [False] * batch
    hyps: list[list[tuple[float, torch.Tensor]]] = [[] for _ in range(batch)]
    step_ids, step_mask = seqs, torch.ones_like(seqs, dtype=torch.bool)
    for t in range(max_new):
        logits, _ = model.tower_forward(modality, step_ids, step_mask, memory, cache, past, record=False)
        past = step_mask if past is None else torch.cat([past, step_mask], 1)
        logp = logits[:, -1].float().log_softmax(-1)  # (B*K, V)
        top_lp, top_tok = logp.topk(min(pre_beam, logp.shape[-1]), dim=-1)  # (B*K, P)
        n_pre = top_tok.shape[-1]
        cand_att = (att.view(-1, 1) + top_lp).view(batch, k * n_pre)  # (B, K*P)
        cand = cand_att if ctc is None else _joint_scores(ctc, seqs[:, len(start):], top_tok, cand_att, eos, done, k)
        top_scores, top_idx = cand.topk(2 * k, dim=-1)  # (B, 2K)
        new_beam = torch.zeros(batch, k, dtype=torch.long, device=device)
        new_tok = torch.full((batch, k), pad, dtype=torch.long, device=device)
        new_att = torch.full((batch, k), float("-inf"), device=device)
        new_scores = torch.full((batch, k), float("-inf"), device=device)
        for b in range(batch):
            if done[b]:
                continue
            j = 0
            for rank in range(2 * k):
                idx, sc = int(top_idx[b, rank]), float(top_scores[b, rank])
                beam, tok = idx // n_pre, int(top_tok[b * k + idx // n_pre, idx % n_pre])
                if sc == float("-inf"):
                    break
                if tok == eos:
                    if rank < k:
                        seq = torch.cat([seqs[b * k + beam], torch.tensor([eos], device=device)])
                        hyps[b].append((sc / (t + 1) ** length_penalty, seq))
                elif j < k:
                    new_beam[b, j], new_tok[b, j] = beam, tok
                    new_att[b, j], new_scores[b, j] = cand_att[b, idx], sc
                    j += 1
            done[b] = len(hyps[b]) >= k
        if all(done):
            break
        beam_idx = (torch.arange(batch, device=device)[:, None] * k + new_beam).view(-1)
        cache.reorder_cache(beam_idx)
        past = past[beam_idx]
        seqs = torch.cat([seqs[beam_idx], new_tok.view(-1, 1)], 1)
        att, scores = new_att, new_scores
        step_ids, step_mask = new_tok.view(-1, 1), torch.ones(batch * k, 1, dtype=torch.bool, device=device)
    best = []
    n_gen = seqs.shape[1] - len(start)
    for b in range(batch):
        if not done[b]:  # the budget ran out first: the running beams compete with the finished hypotheses
            running = [(float(scores[b, j]) / n_gen ** length_penalty, seqs[b * k + j])  # as HF's finalize
                       for j in range(k) if math.isfinite(float(scores[b, j]))]
            hyps[b] = hyps[b] + (running or [(float("-inf"), seqs[b * k])])
        best.append(max(hyps[b], key=lambda h: h[0])[1])
    width = max(len(s) for s in best)
    return torch.stack([torch.cat([s, torch.full((width - len(s),), pad, dtype=torch.long, device=device)])
                        for s in best])


def _joint_scores(ctc, generated, top_tok, cand_att, eos, done, k) -> torch.Tensor:
    """(B, K*P) joint scores (1 - w) * att + w * ctc of every beam's pre-beam candidates.
    generated (B*K, t) tokens so far; top_tok (B*K, P); live beams only (-inf elsewhere)."""
    batch, n_pre = len(done), top_tok.shape[-1]
    joint = torch.full_like(cand_att, float("-inf"))
    for b in range(batch):
        if done[b]:
            continue
        for beam in range(k):
            row = b * k + beam
            if cand_att[b, beam * n_pre] == float("-inf"):  # an unused beam (first step)
                continue
            prefix = generated[row].tolist()
            for p, tok in enumerate(top_tok[row].tolist()):
                c = ctc.score(b, prefix if tok == eos else prefix + [tok], ended=tok == eos)
                a = cand_att[b, beam * n_pre + p]
                joint[b, beam * n_pre + p] = (1 - ctc.weight) * a + ctc.weight * c
    return joint
