"""The README's code examples run as written."""

import re
from pathlib import Path


README = Path(__file__).resolve().parents[1] / "README.md"


def _example(marker: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- example: {marker} -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"README has no example marked {marker!r}"
    return match.group(1)


def test_plug_in_example_trains_a_users_model(capsys):
    namespace: dict = {}
    exec(compile(_example("plug-in"), "README.md", "exec"), namespace)
    loss = float(capsys.readouterr().out.strip())
    assert loss > 0
    assert 0 < namespace["table"].counts.sum() <= 8  # the batch's estimates updated the table


def test_readme_starts_with_the_two_commands():
    lines = README.read_text(encoding="utf-8").split("```bash\n", 1)[1].split("```")[0].strip().splitlines()
    assert lines == [
        "pip install -c constraints.txt -e . && shapmix train",
        'pip install -c constraints.txt -e ".[test]" && python -m pytest -q',
    ]
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert lines[1] in ci
