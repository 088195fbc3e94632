"""README.md's library snippet runs as written, and prints the parameter counts its comment shows."""
from __future__ import annotations

import ast
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _library_snippet() -> str:
    text = README.read_text()
    section = text[text.index("## The library"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_library_snippet_runs_as_written(tmp_path, monkeypatch, capsys):
    code = _library_snippet()
    claimed = ast.literal_eval(re.search(r"^# (\{'trainable'.*\})$", code, re.M).group(1))
    monkeypatch.chdir(tmp_path)  # it saves to runs/my-zip
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert eval(capsys.readouterr().out.strip().splitlines()[0]) == claimed
    assert (tmp_path / "runs/my-zip/zipper.safetensors").is_file()
    assert scope["model"].parameter_counts() == claimed  # the reloaded zip
    assert scope["hyp"][0].modality == "text"
