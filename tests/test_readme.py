"""README.md's library snippet runs as written, and prints the parameter counts its comment shows; its command-line
table names every option of every `zipper` command and none that is refused."""
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


def _commands(parser, path=()):
    """(("data", "build"), its parser), ... for every `zipper` command, nested ones included."""
    import argparse

    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _commands(sub, (*path, name))


def test_the_command_line_table_names_every_option_each_command_accepts_and_no_other():
    """Each row of README.md's command-line table names every option its command's parser accepts (by any of the
    option's spellings), and its usage cell names no option the parser would refuse."""
    from zipper.cli import build_parser

    text = README.read_text()
    table = text[text.index("## Command line"):]
    rows = {re.match(r"\| `zipper ([a-z ]+?)(?= [A-Z\"\[-]|`)", line).group(1): line
            for line in table.splitlines() if line.startswith("| `zipper ")}
    flag = r"(?<![\w-]){}(?![\w-])"
    for path, parser in _commands(build_parser()):
        name = " ".join(path)
        assert name in rows, f"README.md's command-line table has no row for `zipper {name}`"
        row, usage = rows[name], rows[name].split(" | ")[0]
        for action in parser._actions:
            spellings = [o for o in action.option_strings if o not in ("-h", "--help")]
            if spellings:
                assert any(re.search(flag.format(re.escape(o)), row) for o in spellings), \
                    f"`zipper {name}`'s row does not name {'/'.join(spellings)}"
        accepted = {o for a in parser._actions for o in a.option_strings}
        for used in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", usage):
            assert used in accepted, f"`zipper {name}`'s usage names {used}, which its parser refuses"
