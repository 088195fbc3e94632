"""towers: pretrained unimodal decoders (text LMs, speech-unit LMs) and the speech stack around them.

The speech stack (audio I/O, codec, judges, scoring, corpus) is imported on first use, so that
``import towers`` stays light.
"""
from __future__ import annotations

import importlib

from towers.registry import list_towers, register_tower
from towers.speech_lm import new_speech_tower
from towers.tower import DECODER_LAYERS, Tower, TowerError, load_tower
from towers.units import UnitTokenizer

_LAZY = {
    "load_audio": "towers.audio", "save_audio": "towers.audio", "preprocess": "towers.audio",
    "AudioError": "towers.audio",
    "SpeechCodec": "towers.codec", "load_default_codec": "towers.codec", "CodecFormatError": "towers.codec",
    "WhisperJudge": "towers.judges", "PocketsphinxJudge": "towers.judges", "wer": "towers.scoring",
    "cer": "towers.scoring", "normalize_text": "towers.scoring",
    "build_corpus": "towers.corpus", "read_manifest": "towers.corpus", "import_corpus": "towers.corpus_import",
}

__all__ = ["DECODER_LAYERS", "Tower", "TowerError", "UnitTokenizer", "list_towers", "load_tower",
           "new_speech_tower", "register_tower", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'towers' has no attribute {name!r}")
