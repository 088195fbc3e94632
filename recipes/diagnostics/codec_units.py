"""Is it the units or the decoder? The same decoder recipe on different unit encoders of Whisper states.

    OMP_NUM_THREADS=1 .venv/bin/python recipes/diagnostics/codec_units.py --units continuous \
        --train runs/codec_data_joe2k/train.jsonl --states-cache runs/codec_data_joe2k/whisper_states.safetensors \
        --test runs/codec_data/test.jsonl --steps 10800 --out runs/codec_eval/continuous-joe2k-10800

The `whisper-joe` codec loses intelligibility in two places: k-means (512-d state -> one of 1024 ids)
and the decoder recipe (L1 conv decoder -> over-smoothed mel -> Griffin-Lim). This script trains the
codec's decoder (`towers.unit_decoder.UnitToMel`, the config and trainer of
`recipes/configs/codec_whisper.json`) on the same audio from one of these inputs, then judges
decode(input) on held-out voices (and LibriVox) with the Whisper-base judge:

- ``--units continuous``: the unquantised 512-d states (the unit embedding swapped for a linear map).
  Near the original's WER: the units are the bottleneck; near the unit decoder's: the decoder is.
- ``--units kmeans``: k-means ids with ``--k`` clusters fitted (seed 0, 15 iterations, at most 200k
  states) on the states of ``--fit`` manifests (each with its ``--fit-cache`` file, as in
  train_codec.py) by ``towers.codec_train.fit_state_kmeans``, as a codec's k-means is, optionally on
  per-dimension standardised states (``--standardise``: each dimension divided by its standard
  deviation over the fit states; a few Whisper dimensions have 5-8x the median spread and would
  dominate the Euclidean distance).
- ``--units codec --units-from CODEC``: that codec's unit ids (a control).
- ``--units kmeans --space decoder``: k-means in the space the decoder reads, not the state space: a
  decoder is first trained on the continuous states (``--continuous-steps``; its weights are saved to
  ``--out``/continuous_decoder.safetensors, and ``--continuous-from`` reuses them), and the states are
  clustered after its first layer (the linear map 512 -> 192). Distances then weigh state directions
  by how much the decoder uses them. ``--warm-start`` starts the unit decoder from the continuous one
  (its unit embedding set to the centroids) instead of from scratch.

Writes ``results.json`` (per-utterance transcripts) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # recipes/: eval_codec, train_codec

import torch  # noqa: E402

from eval_codec import load_items  # noqa: E402
from train_codec import audio_paths, cached_whisper_states  # noqa: E402
from towers.audio import load_audio  # noqa: E402
from towers.codec import load_codec  # noqa: E402
from towers.codec_train import fit_state_kmeans, train_state_decoder, train_unit_decoder, warm_start_state  # noqa: E402
from towers.judges import WhisperJudge  # noqa: E402
from towers.scoring import normalize_text, wer  # noqa: E402
from towers.whisper_units import WhisperEncoder, WhisperUnitCodec, WhisperUnitCodecConfig, whisper_states  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True, help="JSONL manifest of the decoder's training audio")
    ap.add_argument("--states-cache", help="safetensors cache of the training clips' Whisper states (train_codec.py's)")
    ap.add_argument("--test", required=True, nargs="+",
                    help="JSONL manifest(s) of held-out utterances (audio_filepath, text, voice)")
    ap.add_argument("--n-test", type=int, default=0, help="first N test rows only (0: all)")
    ap.add_argument("--steps", type=int, default=10_800, help="decoder training steps")
    ap.add_argument("--units", required=True, choices=["continuous", "kmeans", "codec"], help="decoder input")
    ap.add_argument("--units-from", help="--units codec: use this codec's centroids")
    ap.add_argument("--k", type=int, default=1024, help="--units kmeans: clusters")
    ap.add_argument("--fit", nargs="+", default=[], help="--units kmeans: manifests whose states k-means is fitted on")
    ap.add_argument("--fit-cache", nargs="+", default=[], help="--units kmeans: a states cache file per --fit manifest")
    ap.add_argument("--standardise", action="store_true", help="--units kmeans: per-dimension standardised states")
    ap.add_argument("--space", choices=["state", "decoder"], default="state",
                    help="--units kmeans: cluster the (optionally standardised) states, or their image under the "
                         "first layer of a decoder trained on the continuous states")
    ap.add_argument("--continuous-steps", type=int, default=10_800, help="--space decoder: its continuous decoder's steps")
    ap.add_argument("--continuous-from", help="--space decoder: a continuous_decoder.safetensors to reuse")
    ap.add_argument("--warm-start", action="store_true",
                    help="--space decoder: start the unit decoder from the continuous one")
    ap.add_argument("--augment-speeds", type=float, nargs="+", default=[],
                    help="also train the decoder(s) on speed-perturbed copies of the --train audio (resampled: a "
                         "factor 1.1 plays 10%% faster and 10%% higher, like a shorter vocal tract), each paired with "
                         "the UNperturbed clip's log-mel stretched in time to its length, so the decoder learns to "
                         "map other speakers' states to the training voice")
    ap.add_argument("--extra-train", nargs="+", default=[],
                    help="manifests of more decoder training audio, each paired with its own log-mel "
                         "(a multi-voice decoder)")
    ap.add_argument("--threads", type=int, default=1, help="torch, encoder and judge CPU threads")
    ap.add_argument("--out", required=True, help="output directory for results.json")
    args = ap.parse_args(argv)
    if any(not 0.5 <= f <= 2.0 for f in args.augment_speeds):  # before any Whisper encoding
        ap.error(f"--augment-speeds factors must be in [0.5, 2], got {args.augment_speeds}")
    torch.set_num_threads(args.threads)

    cfg = json.loads((Path(__file__).resolve().parents[1] / "configs" / "codec_whisper.json").read_text())
    c = WhisperUnitCodecConfig.from_dict(cfg["codec"])
    shell = WhisperUnitCodec(c, torch.zeros(c.vocab_size, 512))  # for its mel and vocoder
    encoder = WhisperEncoder(threads=args.threads)

    def states_of(manifest: str, cache: str | None) -> tuple[list, list[torch.Tensor]]:
        paths = audio_paths(manifest, None, set())
        waves = [load_audio(p, target_sr=16_000)[0] for p in paths]
        if cache:
            return waves, [s.float() for s in cached_whisper_states(Path(cache), paths, waves, args.threads)]
        return waves, whisper_states(waves, encoder=encoder, progress=True)

    train_cfg = cfg["train"]

    def fit_decoder(dec, feats, mels, steps):
        train_unit_decoder(dec, feats, mels, 1, steps, train_cfg["batch_size"], train_cfg["crop_units"],
                           train_cfg["lr"], train_cfg["seed"], log_every=500)

    waves, states = states_of(args.train, args.states_cache)
    mels = [shell.mel(torch.from_numpy(w)) for w in waves]  # [(T_i (+1), n_mels)]
    if args.augment_speeds:
        states, mels = augment_speeds(waves, states, mels, args.augment_speeds, encoder)
    for m in args.extra_train:
        w_x, s_x = states_of(m, None)
        states, mels = states + s_x, mels + [shell.mel(torch.from_numpy(w)) for w in w_x]
        print(f"[data] +{len(w_x)} clips of {m} with their own log-mel", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    units = None  # a WhisperUnitCodec whose units_of_states quantises; None = continuous input
    cont = None
    if args.units == "codec":
        if not args.units_from:
            ap.error("--units codec needs --units-from")
        units = load_codec(args.units_from)
    elif args.units == "kmeans":
        if not args.fit or len(args.fit_cache) not in (0, len(args.fit)):
            ap.error("--units kmeans needs --fit manifests (and one --fit-cache per manifest, or none)")
        fit = [s for m, ca in zip(args.fit, args.fit_cache or [None] * len(args.fit)) for s in states_of(m, ca)[1]]
        proj = None
        if args.space == "decoder":
            from safetensors.torch import load_file, save_file

            if args.continuous_from:
                cont = train_state_decoder(c, [], [], 0)  # the architecture, then the saved weights
                cont.load_state_dict(load_file(args.continuous_from))
            else:
                cont = train_state_decoder(c, states, mels, args.continuous_steps, train_cfg["batch_size"],
                                           train_cfg["crop_units"], train_cfg["lr"], train_cfg["seed"], log_every=500)
                save_file(cont.state_dict(), str(out / "continuous_decoder.safetensors"))
            proj = (cont.embed.weight.detach(), cont.embed.bias.detach())
            with torch.no_grad():
                fit = [torch.nn.functional.linear(s, *proj) for s in fit]
        t0 = time.time()
        cents, scale = fit_state_kmeans(fit, args.k, args.standardise, n_iter=15, seed=0)
        print(f"[units] k-means k={args.k} on {sum(len(s) for s in fit)} states in {time.time() - t0:.0f}s", flush=True)
        units = WhisperUnitCodec(replace(c, vocab_size=args.k, standardise=args.standardise, project=proj is not None),
                                 cents, state_scale=scale, state_proj=proj)

    def inputs(states: torch.Tensor) -> torch.Tensor:  # (T, 512) -> (T, 512) states or (T,) unit ids
        return states if units is None else units.units_of_states(states)

    feats = [inputs(s) for s in states]
    if units is None:
        dec = train_state_decoder(c, [], [], 0)  # untrained; fitted below
    else:
        dec = WhisperUnitCodec.new_decoder(replace(c, vocab_size=units.vocab_size))
        if args.warm_start and cont is not None:
            dec.load_state_dict(warm_start_state(cont, units))
        used = torch.unique(torch.cat(feats)).numel()
        print(f"[units] the decoder's training audio uses {used}/{units.vocab_size} units", flush=True)
    t0 = time.time()
    fit_decoder(dec, feats, mels, args.steps)
    train_s = time.time() - t0

    judge = WhisperJudge(cpu_threads=args.threads)
    items = load_items(args.test, args.n_test, librivox=not args.n_test)
    for it in items:
        x, _ = load_audio(it["path"], target_sr=16_000)
        with torch.no_grad():
            mel = dec(inputs(whisper_states([x], encoder=encoder)[0])[None])[0]  # (T, n_mels)
        y = shell.vocoder(mel).numpy()
        y = y / max(1e-6, float(abs(y).max())) * 0.7
        it.update(ref=normalize_text(it["text"]), hyp=normalize_text(judge.transcribe_one((y, 16_000))))
    groups = {"all held-out voices": [i for i in items if i["set"].startswith("held-out")],
              "non-joe held-out voices": [i for i in items if i["set"].startswith("held-out") and i["voice"] != "piper:joe"],
              "piper joe": [i for i in items if i["voice"] == "piper:joe"],
              "LibriVox": [i for i in items if i["voice"] == "librivox"]}
    table = {k: wer([i["ref"] for i in v], [i["hyp"] for i in v]).wer for k, v in groups.items() if v}
    for k, v in table.items():
        print(f"{k:26s} {v:6.1%}")
    (out / "results.json").write_text(json.dumps(
        {"command": " ".join(sys.argv), "steps": args.steps, "train_seconds": round(train_s),
         "units": args.units, "units_from": args.units_from, "k": args.k if args.units == "kmeans" else None,
         "fit": args.fit, "standardise": args.standardise, "space": args.space,
         "warm_start": args.warm_start, "augment_speeds": args.augment_speeds, "extra_train": args.extra_train,
         "table": table, "items": items}, indent=1) + "\n")


def augment_speeds(waves, states, mels, factors, encoder):
    """(states, mels) plus, per factor f, every clip resampled to play f times faster (and f times higher)
    with the original clip's log-mel linearly stretched to the new clip's frame count."""
    import torchaudio.functional as AF

    out_s, out_m = list(states), list(mels)
    for f in factors:
        fast = [AF.resample(torch.from_numpy(w), int(round(16_000 * f)), 16_000).numpy() for w in waves]
        s_f = whisper_states(fast, encoder=encoder, progress=True)
        for s, s0, m in zip(s_f, states, mels):
            n = s.shape[0] + (m.shape[0] - s0.shape[0])  # keep the clip's state/mel frame offset
            out_s.append(s)
            out_m.append(torch.nn.functional.interpolate(m.T[None], size=n, mode="linear", align_corners=True)[0].T)
        print(f"[data] +{len(fast)} clips at speed {f}", flush=True)
    return out_s, out_m


if __name__ == "__main__":
    main()
