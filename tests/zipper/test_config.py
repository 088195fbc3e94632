"""ZipperConfig: JSON round trip, and every malformed config gets a ConfigError (never another exception)."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zipper import ConfigError, ZipperConfig


def test_json_round_trip(tmp_path):
    cfg = ZipperConfig(modalities=["speech", "text"], towers=["/a", "smollm2-135m"], cross_attention_interval=[2, 5],
                       directions=["speech->text"], lora_rank=8, lora_towers=["speech"], frozen=[False, True])
    cfg.save(tmp_path / "c.json")
    assert ZipperConfig.from_json(tmp_path / "c.json") == cfg


@pytest.mark.parametrize("data,match", [
    ({"modalitis": ["a", "b"]}, "unknown config keys"),
    ({"_target_": "os.system"}, "unknown config keys"),
    ({"num_heads": "8"}, "num_heads must be"),
    ({"num_heads": True}, "num_heads must be"),
    ({"modalities": ["text"]}, "at least 2"),
    ({"modalities": ["a", "a"]}, "distinct"),
    ({"directions": ["speech->image"]}, "direction"),
    ({"directions": ["speech-text"]}, "direction"),
    ({"directions": []}, "empty"),
    ({"frozen": [True]}, "entries"),
    ({"cross_attention_interval": [-1, 1]}, ">= 0"),
    ({"lora_towers": ["image"]}, "lora_towers"),
    ({"lora_rank": 4}, "go together"),  # no tower named: would add no adapters, silently
    ({"lora_towers": ["speech"]}, "go together"),
    ({"projection_layers": 0}, ">= 1"),
    ({"dropout": 1.5}, "dropout"),
    ({"lora_dropout": 1.0}, "lora_dropout"), ({"lora_dropout": -0.5}, "lora_dropout"), ({"lora_alpha": -2}, "lora_alpha"),
    # zip block names "<a>_to_<b>" would collide ("a_to"->"b" and "a"->"to_b") or not be module names
    ({"modalities": ["a_to", "b", "a", "to_b"], "directions": ["a_to->b", "a->to_b"]}, "modality name 'a_to'"),
    ({"modalities": ["a", "to_b"], "directions": ["a->to_b"]}, "modality name 'to_b'"),
    ({"modalities": ["x_to_y", "b"], "directions": ["x_to_y->b"]}, "modality name"),
    ({"modalities": ["a.b", "c"], "directions": ["a.b->c"]}, "modality name"),
    ({"modalities": ["", "c"], "directions": ["->c"]}, "modality name"),
    ({"modalities": ["a->b", "c"]}, "modality name"),
    ({"input_projection": False, "input_projection_towers": ["text"]}, "input_projection=True"),
    ({"lora_rank": 4, "lora_towers": ["text", "text"]}, "duplicate entries in lora_towers"),
])
def test_bad_configs(data, match):
    with pytest.raises(ConfigError, match=match):
        ZipperConfig.from_dict(data)


def test_bad_json_files(tmp_path):
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        ZipperConfig.from_json(tmp_path / "a.json")
    (tmp_path / "b.json").write_text("!!python/object:os.system ['echo hi']")
    with pytest.raises(ConfigError):
        ZipperConfig.from_json(tmp_path / "b.json")
    (tmp_path / "c.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ConfigError, match="JSON object"):
        ZipperConfig.from_json(tmp_path / "c.json")
    (tmp_path / "d.json").write_text('{"ffn_mult": 2, "ffn_mult": 0}')  # used to take the last value silently
    with pytest.raises(ConfigError, match="duplicate keys \\['ffn_mult'\\]"):
        ZipperConfig.from_json(tmp_path / "d.json")


_values = st.recursive(st.none() | st.booleans() | st.integers(-3, 12) | st.floats(allow_nan=True) | st.text(max_size=8),
                       lambda inner: st.lists(inner, max_size=3), max_leaves=6)
_keys = st.sampled_from(["modalities", "towers", "cross_attention_interval", "directions", "num_heads",
                         "projection_layers", "ffn_mult", "dropout", "frozen", "lora_rank", "lora_towers", "bogus"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=5))
def test_fuzzed_configs_valid_or_config_error(data):
    try:
        cfg = ZipperConfig.from_dict(data)
    except ConfigError:
        return
    assert ZipperConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_accelerate_configs_are_valid():
    """The multi-process configs in recipes/accelerate load as accelerate configs (keys and types checked)."""
    from pathlib import Path

    from accelerate.commands.config.config_args import ClusterConfig

    files = sorted((Path(__file__).parents[2] / "recipes" / "accelerate").glob("*.yaml"))
    assert len(files) >= 3
    for f in files:
        cfg = ClusterConfig.from_yaml_file(f)
        assert cfg.num_processes >= 2 and str(f.name) in f.read_text().splitlines()[1]  # names its own command
