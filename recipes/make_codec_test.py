"""More held-out utterances for the codec evaluation: the 6 test voices of make_codec_data.py, each
reading N GCIDE quotations that no codec data set uses.

    OMP_NUM_THREADS=1 .venv/bin/python recipes/make_codec_test.py 40     # ~5 min: 240 utterances

60 test utterances (make_codec_data.py) leave ~5 points of noise on a codec's judge-WER; this adds
6 x N. Sentences: ``towers.text_sources.gcide_quotations`` (6-18 words, ``clean_sentences``), shuffled with
seed 2, minus every sentence (normalised) of runs/codec_data/{train,test}.jsonl and of the joe decoder
sets that exist (runs/codec_data_joe*/train.jsonl), so no codec ever trained on them. The voices are
held out from every codec too (the decoders learn joe; make_codec_data.py's TEST list). Same
synthesis and post-processing as make_codec_data.py. Writes runs/codec_data/test_more.jsonl and
runs/codec_data/wav/more_*.wav; re-running keeps the WAVs already written.
"""
import glob, json, os, random, re, sys

from make_codec_data import OUT, TEST, synth_missing, write_manifest  # recipes/ is sys.path[0] when run as a script


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    from towers.text_sources import clean_sentences, gcide_quotations

    norm = lambda s: " ".join(re.sub(r"[^a-z' ]", " ", s.lower()).split())  # noqa: E731
    manifests = [f"{OUT}/train.jsonl", f"{OUT}/test.jsonl", *glob.glob("runs/codec_data_joe*/train.jsonl")]
    used = {norm(json.loads(line)["text"]) for m in manifests for line in open(m) if line.strip()}
    pool = clean_sentences(gcide_quotations(), 6, 18)
    random.Random(2).shuffle(pool)
    sents, seen = [], set(used)
    for s in pool:
        if norm(s) not in seen:
            sents.append(s)
            seen.add(norm(s))
        if len(sents) == n * len(TEST):
            break
    print(f"{len(used)} sentences in {len(manifests)} codec manifests; {len(sents)} new ones", flush=True)
    random.seed(0)  # espeak's speaking rate draw in synth()
    rows, k = [], 0
    for engine, voice in TEST:
        items = [(sents[k + i], f"{OUT}/wav/more_{engine}_{voice.replace('+', '_')}_{k + i:05d}.wav") for i in range(n)]
        k += n
        durs = synth_missing(engine, voice, items)
        rows += [dict(audio_filepath=os.path.abspath(p), duration=round(d, 3), text=t, voice=f"{engine}:{voice}")
                 for (t, p), d in zip(items, durs)]
        print(engine, voice, round(sum(durs)), "s", flush=True)
    write_manifest(f"{OUT}/test_more.jsonl", rows, "test_more")


if __name__ == "__main__":
    main()
