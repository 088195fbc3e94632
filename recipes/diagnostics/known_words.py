"""How many words of a split the fused search (zipper/ctc_beam.py) does not know, per lexicon: the text tower's
whole-word tokens, plus the corpus's training text (zipper.data.corpus_words), plus a word list (a dictionary).

    python recipes/diagnostics/known_words.py data/corpus-base test 100 [/usr/share/dict/american-english-huge]

Prints each lexicon's size and the share of the first N sentences' words (normalised as the CTC targets) it lacks,
with the commonest of those the tokens lack. Made the counts of recipes/diagnostics/README.md, "Known words".
"""
import sys
from collections import Counter
from pathlib import Path

from towers.corpus import read_manifest
from towers.scoring import normalize_text
from towers.registry import resolve
from towers.tower import _load_tokenizer
from zipper.ctc import CTC_CHARS
from zipper.ctc_beam import Lexicon, read_word_list
from zipper.data import corpus_words

corpus, split, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
entry = resolve("smollm2-135m")
tokenizer = _load_tokenizer(Path(entry.path), entry.gguf_file, False)
trained, listed = corpus_words(corpus), read_word_list(sys.argv[4]) if len(sys.argv) > 4 else None
extras = {"tower tokens": [], "+ training text": trained}
if listed is not None:
    extras |= {"+ word list": listed, "+ both": trained | set(listed)}
lexicons = {name: Lexicon.from_tokenizer(tokenizer, CTC_CHARS, words) for name, words in extras.items()}
tokens = lexicons["tower tokens"]
rows = read_manifest(Path(corpus) / f"{split}.jsonl", absolute=False, require=("text",))[:n]
words = [w for r in rows for w in normalize_text(r["text"]).split()]
print(f"{split}: {len(rows)} sentences, {len(words)} words")
for name, lex in lexicons.items():
    unknown = [w for w in words if not lex.known_word(w)]
    print(f"{name}: {len(lex.words)} words known, {100 * len(unknown) / len(words):.1f}% of the words unknown")
print("commonest unknown to the tokens:", Counter(w for w in words if not tokens.known_word(w)).most_common(12))
