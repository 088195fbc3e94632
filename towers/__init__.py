"""towers: pretrained unimodal decoders (text LMs, speech-unit LMs) and the speech stack around them."""
from towers.registry import list_towers, register_tower
from towers.speech_lm import new_speech_tower
from towers.tower import DECODER_LAYERS, Tower, TowerError, load_tower
from towers.units import UnitTokenizer

__all__ = ["DECODER_LAYERS", "Tower", "TowerError", "UnitTokenizer", "list_towers", "load_tower",
           "new_speech_tower", "register_tower"]
