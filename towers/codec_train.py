"""Training the default :class:`towers.codec.MelUnitCodec` from waveforms.

Two stages, both on CPU in minutes for ~45 minutes of audio:

1. k-means (k-means++ init, :func:`towers.kmeans.fit_kmeans`) over the codec's unit features
   (stacked, mean-normalised log-mel frames) -> ``centroids``.
2. The unit -> mel decoder (:class:`towers.unit_decoder.UnitToMel`), trained with L1 on random
   crops of (units, real log-mel) pairs, Adam + cosine learning-rate decay.

:func:`train_tiny_codec` builds a throw-away codec in a few seconds (for tests).
"""

from __future__ import annotations

import math
import time
from typing import Sequence

import numpy as np
import torch

from towers.audio import preprocess
from towers.codec import MelUnitCodec, MelUnitCodecConfig
from towers.kmeans import assign, fit_kmeans

__all__ = ["train_mel_unit_codec", "train_unit_decoder", "train_whisper_unit_codec", "train_state_decoder",
           "warm_start_state", "fit_state_kmeans", "train_tiny_codec", "synthetic_babble"]


def train_mel_unit_codec(
    waves: Sequence,
    sample_rate: int = 16_000,
    config: MelUnitCodecConfig | None = None,
    kmeans_iters: int = 25,
    kmeans_max_points: int = 200_000,
    dec_steps: int = 2_000,
    batch_size: int = 16,
    crop_units: int = 48,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
    log_every: int = 100,
    units_from: MelUnitCodec | None = None,
    init_decoder: dict | None = None,
    delta_weight: float = 0.0,
    adv_weight: float = 0.0,
    fm_weight: float = 0.0,
) -> MelUnitCodec:
    """Train a :class:`MelUnitCodec` on ``waves`` (numpy/tensor ``(n,)``, all at ``sample_rate``).

    ``units_from``: a trained codec whose unit encoder (``centroids``, ``feat_std``) is copied
    instead of fitting k-means, so only the decoder is trained (e.g. a single-speaker decoder for
    the same units). Its unit fields (rates, mel, ``stride``/``context``/``mean_norm``, vocab) must
    equal ``config``'s. ``init_decoder``: a decoder state dict to start from (fine-tuning) instead of
    a random decoder. ``delta_weight``, ``adv_weight``, ``fm_weight``: see :func:`train_unit_decoder`.
    """
    c = config or MelUnitCodecConfig()
    if units_from is not None:
        diff = {k: (getattr(c, k), getattr(units_from.config, k)) for k in MelUnitCodecConfig.UNIT_FIELDS
                if getattr(c, k) != getattr(units_from.config, k)}
        if diff:
            raise ValueError(f"units_from codec has other unit settings (config, units_from): {diff}")
    torch.manual_seed(seed)
    shell = MelUnitCodec(c, torch.zeros(c.vocab_size, c.context * c.n_mels), torch.ones(c.n_mels))

    # ---- features ----
    t0 = time.time()
    mels = []
    for w in waves:
        x, _ = preprocess(w, sample_rate, target_sr=c.sample_rate, max_seconds=None, return_tensor=True)
        with torch.no_grad():
            mels.append(shell.mel(x))  # (T, n_mels)
    if units_from is not None:
        shell.feat_std = units_from.feat_std.clone()
    else:
        centred = torch.cat([m - m.mean(0, keepdim=True) if c.mean_norm else m for m in mels])  # (sum T, n_mels)
        shell.feat_std = centred.std(0).clamp_min(1e-3)  # (n_mels,)
    feats = [shell.unit_features(m) for m in mels]  # [(U_i, context * n_mels)]
    all_feats = torch.cat(feats)
    if progress:
        print(f"[codec] {len(mels)} utterances, {sum(m.shape[0] for m in mels) * c.hop_length / c.sample_rate / 60:.1f} min,"
              f" {all_feats.shape[0]} unit frames, features {time.time() - t0:.1f}s", flush=True)
    if all_feats.shape[0] > kmeans_max_points:
        g = torch.Generator().manual_seed(seed)
        all_feats = all_feats[torch.randperm(all_feats.shape[0], generator=g)[:kmeans_max_points]]

    # ---- k-means ----
    t0 = time.time()
    if units_from is not None:
        shell.centroids = units_from.centroids.clone()
    else:
        shell.centroids = fit_kmeans(all_feats, c.vocab_size, n_iter=kmeans_iters, seed=seed, progress=progress)
    units = [assign(f, shell.centroids) for f in feats]  # [(U_i,)]
    if progress:
        used = torch.unique(torch.cat(units)).numel()
        print(f"[codec] k-means {time.time() - t0:.1f}s, {used}/{c.vocab_size} units used", flush=True)

    # ---- decoder ----
    train_unit_decoder(shell.decoder, units, mels, c.stride, dec_steps, batch_size, crop_units, lr, seed,
                       progress, log_every, delta_weight, adv_weight, fm_weight, init_decoder)
    return shell


def train_unit_decoder(dec, units: list, mels: list, stride: int, dec_steps: int = 2_000, batch_size: int = 16,
                       crop_units: int = 48, lr: float = 2e-3, seed: int = 0, progress: bool = True,
                       log_every: int = 100, delta_weight: float = 0.0, adv_weight: float = 0.0,
                       fm_weight: float = 0.0, init_decoder: dict | None = None) -> None:
    """Fit ``dec`` (:class:`UnitToMel`) in place: L1 between ``dec(units crop)`` and the real log-mel.
    ``init_decoder``: a state dict loaded into ``dec`` first (fine-tuning).

    ``units[i]`` is ``(U_i,)``, ``mels[i]`` is ``(>= U_i * stride - stride + 1, n_mels)``.
    Optional terms against over-smoothing (``towers.mel_discriminator``): ``delta_weight`` x L1 of the
    mel's time/frequency differences; ``adv_weight`` x least-squares GAN loss of a patch discriminator
    on the log-mel, plus ``fm_weight`` x its feature-matching loss (the discriminator is trained
    alongside, with the same learning-rate schedule).
    """
    from towers.mel_discriminator import MelDiscriminator, delta_l1, feature_matching, lsgan_d_loss, lsgan_g_loss

    if init_decoder is not None:
        dec.load_state_dict({k: v.float() for k, v in init_decoder.items()})
    dec.train()
    opt = torch.optim.AdamW(dec.parameters(), lr=lr, weight_decay=1e-4)
    schedule = lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, dec_steps))))  # noqa: E731
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    disc = d_opt = d_sched = None
    if adv_weight > 0 or fm_weight > 0:
        disc = MelDiscriminator()
        d_opt = torch.optim.AdamW(disc.parameters(), lr=lr, betas=(0.8, 0.99))
        d_sched = torch.optim.lr_scheduler.LambdaLR(d_opt, schedule)
    # Crops are crop_units long, taken from the clips that long or longer (a short clip must not shrink
    # every crop); only when no clip is that long, the crop falls back to the longest clip's length.
    crop = crop_units
    if max(u.shape[0] for u in units) < crop_units:
        crop = max(u.shape[0] for u in units)
        print(f"[codec] no clip has {crop_units} units; training the decoder on {crop}-unit crops", flush=True)
    pairs = [(u, m) for u, m in zip(units, mels) if u.shape[0] >= crop]
    lengths = torch.tensor([u.shape[0] - crop + 1 for u, _ in pairs], dtype=torch.float)
    g = torch.Generator().manual_seed(seed + 1)
    it = range(dec_steps)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="unit->mel decoder", mininterval=5)
    running, t0 = None, time.time()
    for step in it:
        pick = torch.multinomial(lengths, batch_size, replacement=True, generator=g)
        u_b, m_b = [], []
        for i in pick.tolist():
            u, m = pairs[i]
            s = int(torch.randint(u.shape[0] - crop + 1, (1,), generator=g))
            u_b.append(u[s : s + crop])
            m_crop = m[s * stride : (s + crop) * stride]
            if m_crop.shape[0] < crop * stride:  # last unit may cover fewer frames: repeat edge
                m_crop = torch.cat([m_crop, m_crop[-1:].expand(crop * stride - m_crop.shape[0], -1)])
            m_b.append(m_crop)
        u_b, m_b = torch.stack(u_b), torch.stack(m_b)  # (B, crop), (B, crop * stride, n_mels)
        pred = dec(u_b)  # (B, crop * stride, n_mels)
        l1 = loss = (pred - m_b).abs().mean()
        if delta_weight > 0:
            loss = loss + delta_weight * delta_l1(pred, m_b)
        if disc is not None:
            d_real, f_real = disc(m_b)
            d_loss = lsgan_d_loss(d_real, disc(pred.detach())[0])
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
            d_sched.step()
            # decoder step against the updated discriminator (its grads from here are cleared before its
            # next step); feature matching reuses the real features from before its update
            d_fake, f_fake = disc(pred)
            loss = loss + adv_weight * lsgan_g_loss(d_fake) + fm_weight * feature_matching(f_real, f_fake)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(dec.parameters(), 1.0)
        opt.step()
        sched.step()
        running = l1.item() if running is None else 0.98 * running + 0.02 * l1.item()
        if progress and (step + 1) % log_every == 0:
            gan = f" D {d_loss.item():.3f} G_adv {lsgan_g_loss(d_fake).item():.3f}" if disc is not None else ""
            print(f"[codec] step {step + 1}/{dec_steps} L1 {running:.3f}{gan} ({time.time() - t0:.0f}s)", flush=True)
    dec.eval()


def synthetic_babble(seconds: float = 2.0, n: int = 4, sample_rate: int = 16_000, seed: int = 0) -> list[np.ndarray]:
    """``n`` deterministic speech-like signals (gliding harmonic tones with pauses), float32 ``(samples,)``."""
    rng = np.random.default_rng(seed)
    out = []
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    for _ in range(n):
        f0 = 110 + 80 * rng.random() + 30 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t)
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        formant = rng.uniform(1, 6, size=3)
        x = sum(np.sin(k * phase) / k * (1 + np.sin(2 * np.pi * formant[k % 3] * t)) for k in range(1, 8))
        gate = (np.sin(2 * np.pi * rng.uniform(1, 3) * t) > -0.3).astype(np.float64)
        out.append((0.2 * x * gate + 0.003 * rng.standard_normal(t.size)).astype(np.float32))
    return out


def train_tiny_codec(waves: Sequence | None = None, sample_rate: int = 16_000, seed: int = 0,
                     vocab_size: int = 32, dec_steps: int = 30) -> MelUnitCodec:
    """A small, fast :class:`MelUnitCodec` (seconds on CPU) for tests; quality is not the point."""
    if waves is None:
        waves = synthetic_babble(seed=seed)
    c = MelUnitCodecConfig(vocab_size=vocab_size, n_mels=40, dec_channels=16, dec_unit_dilations=[1, 2],
                           dec_frame_dilations=[1], dec_kernel=3, gl_iters=8)
    return train_mel_unit_codec(waves, sample_rate, c, kmeans_iters=5, dec_steps=dec_steps, batch_size=4,
                                crop_units=16, seed=seed, progress=False)


def train_whisper_unit_codec(waves: Sequence, sample_rate: int = 16_000, config=None, kmeans_iters: int = 20,
                             kmeans_max_points: int = 200_000, dec_steps: int = 1_500, batch_size: int = 12,
                             crop_units: int = 96, lr: float = 2e-3, seed: int = 0, progress: bool = True,
                             log_every: int = 100, units_from=None, states: Sequence | None = None,
                             init_decoder: dict | None = None, delta_weight: float = 0.0, adv_weight: float = 0.0,
                             fm_weight: float = 0.0, project_steps: int = 0, warm_start: bool = False,
                             kmeans_states: Sequence | None = None, parallel: Sequence | None = None):
    """Train a :class:`towers.whisper_units.WhisperUnitCodec`: k-means over Whisper-base encoder
    states, then the unit -> mel decoder (same trainer as the default codec).

    ``units_from``: a trained ``WhisperUnitCodec`` whose unit encoder (centroids, scale, projection) is
    copied instead of fitting k-means (same units; only the decoder is trained, e.g. on a single
    target speaker). ``states``: the clips' encoder states if already computed
    (``whisper_states(waves)``, cached), one ``(ceil(n_i / 320), 512)`` tensor per wave.
    ``kmeans_states``: fit k-means on these states instead of ``states`` (e.g. many voices, while the
    decoder learns one). ``init_decoder``, ``delta_weight``, ``adv_weight``, ``fm_weight``: as in
    :func:`train_mel_unit_codec`.

    With ``config.project``: a decoder is first trained for ``project_steps`` on the unquantised states
    of ``waves`` (:func:`train_state_decoder`); its first layer is the projection k-means runs in.
    ``warm_start`` then starts the unit decoder from that decoder (each unit's embedding = its centroid).

    ``parallel``: extra decoder examples ``(k, states)``: another voice's encoder states, already warped
    onto the frames of ``waves[k]`` (``states[towers.align.warp_index(states, states_k)[0]]``), to be
    decoded as ``waves[k]``'s mel. The decoder then learns to render any voice in the voice of
    ``waves``, from parallel recordings of the same sentences. They do not enter k-means.
    """
    from towers.whisper_units import WhisperUnitCodec, WhisperUnitCodecConfig, whisper_states

    c = config or WhisperUnitCodecConfig()
    if units_from is not None and units_from.config.vocab_size != c.vocab_size:
        raise ValueError(f"units_from has vocab {units_from.config.vocab_size}, config {c.vocab_size}")
    if c.project and units_from is None and project_steps <= 0:
        raise ValueError("config.project needs train.project_steps > 0 (the steps of the decoder it comes from)")
    if warm_start and (not c.project or units_from is not None):
        raise ValueError("warm_start needs config.project and no units_from (it starts from the projection's decoder)")
    torch.manual_seed(seed)
    d = c.dec_channels if c.project else 512
    shell = WhisperUnitCodec(c, torch.zeros(c.vocab_size, d), state_scale=torch.ones(d) if c.standardise else None,
                             state_proj=(torch.zeros(d, 512), torch.zeros(d)) if c.project else None)
    xs = [preprocess(w, sample_rate, target_sr=16_000, max_seconds=None)[0] for w in waves]
    t0 = time.time()
    if states is None:
        states = whisper_states(xs, progress=progress)  # [(T_i, 512)]
    elif len(states) != len(xs):
        raise ValueError(f"{len(states)} state tensors for {len(xs)} waves")
    states = [torch.as_tensor(s).float() for s in states]
    for k, s in parallel or ():  # checked before any training
        if not 0 <= k < len(states):
            raise ValueError(f"a parallel example names wave {k}; there are {len(states)} waves")
        if len(s) != len(states[k]):
            raise ValueError(f"parallel states for wave {k} have {len(s)} frames, that wave's states {len(states[k])}")
    with torch.no_grad():
        mels = [shell.mel(torch.from_numpy(x)) for x in xs]  # [(T_i (+1), n_mels)]
    if progress:
        print(f"[codec] whisper states for {len(xs)} clips in {time.time() - t0:.0f}s", flush=True)
    state_dec = None
    if units_from is not None:
        for key in ("standardise", "project"):
            if getattr(units_from.config, key) != getattr(c, key):
                raise ValueError(f"units_from has {key}={getattr(units_from.config, key)}, config {getattr(c, key)}")
        shell.centroids = units_from.centroids.clone()
        shell.state_scale = None if units_from.state_scale is None else units_from.state_scale.clone()
        shell.state_proj = None if units_from.state_proj is None else tuple(t.clone() for t in units_from.state_proj)
    else:
        if c.project:
            state_dec = train_state_decoder(c, states, mels, project_steps, batch_size, crop_units, lr, seed,
                                            progress, log_every)
            shell.state_proj = tuple(t.detach().clone() for t in (state_dec.embed.weight, state_dec.embed.bias))
        shell.state_scale = None  # fit_state_kmeans computes it (with standardise) over the projected points
        with torch.no_grad():
            pts = [shell.unit_space(torch.as_tensor(s).float()) for s in (kmeans_states or states)]
        shell.centroids, shell.state_scale = fit_state_kmeans(pts, c.vocab_size, c.standardise, kmeans_iters,
                                                              kmeans_max_points, seed, progress)
    units = [shell.units_of_states(s) for s in states]
    for k, s in parallel or ():
        units.append(shell.units_of_states(torch.as_tensor(s).float()))
        mels.append(mels[k])
    if warm_start:
        init_decoder = warm_start_state(state_dec, shell)
    train_unit_decoder(shell.decoder, units, mels, 1, dec_steps, batch_size, crop_units, lr, seed, progress,
                       log_every, delta_weight, adv_weight, fm_weight, init_decoder)
    return shell


def warm_start_state(state_dec, codec) -> dict[str, torch.Tensor]:
    """A unit decoder's initial weights from the state decoder its codec's projection came from: the
    same layers, and each unit's embedding = its centroid mapped back to the first layer's output
    (``embed(state)`` ~ ``embed(nearest centroid's states)``; the projection's bias is in the centroid)."""
    init = {k: v for k, v in state_dec.state_dict().items() if not k.startswith("embed.")}
    init["embed.weight"] = codec.centroids * (codec.state_scale if codec.state_scale is not None else 1.0)
    return init


def train_state_decoder(config, states: Sequence[torch.Tensor], mels: list, steps: int, batch_size: int = 12,
                        crop_units: int = 96, lr: float = 2e-3, seed: int = 0, progress: bool = True,
                        log_every: int = 100):
    """The unit -> mel decoder of a WhisperUnitCodecConfig, trained on the unquantised ``(T_i, 512)``
    states (its unit embedding replaced by a linear map ``embed``: 512 -> dec_channels). ``steps=0``:
    untrained (the architecture, e.g. to load saved weights into)."""
    from torch import nn

    from towers.whisper_units import WhisperUnitCodec

    dec = WhisperUnitCodec.new_decoder(config)
    dec.embed = nn.Linear(512, config.dec_channels)  # continuous input in place of the unit embedding
    if steps > 0:
        train_unit_decoder(dec, list(states), mels, 1, steps, batch_size, crop_units, lr, seed, progress, log_every)
    return dec.eval()


def fit_state_kmeans(states: Sequence[torch.Tensor], k: int, standardise: bool = False, n_iter: int = 20,
                     max_points: int = 200_000, seed: int = 0, progress: bool = True):
    """k-means over encoder states (a list of ``(T_i, D)``) -> ``(centroids (k, D), state_scale (D,) or None)``.

    With ``standardise`` every dimension is divided by its standard deviation over all the states
    first (``state_scale``; the centroids live in that scaled space). At most ``max_points`` states,
    drawn with ``seed``, are clustered.
    """
    pts = torch.cat(list(states)).float()  # (N, D)
    scale = pts.std(0).clamp_min(1e-3) if standardise else None
    if scale is not None:
        pts = pts / scale
    if pts.shape[0] > max_points:
        pts = pts[torch.randperm(pts.shape[0], generator=torch.Generator().manual_seed(seed))[:max_points]]
    return fit_kmeans(pts, k, n_iter=n_iter, seed=seed, progress=progress), scale
