"""The README's code examples run as written."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F


README = Path(__file__).resolve().parents[1] / "README.md"
SRC = README.parent / "src"


def _example(marker: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- example: {marker} -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"README has no example marked {marker!r}"
    return match.group(1)


def test_plug_in_example_trains_a_users_model(capsys):
    namespace: dict = {}
    exec(compile(_example("plug-in"), "README.md", "exec"), namespace)
    loss = float(capsys.readouterr().out.strip())
    assert math.isfinite(loss) and loss > 0
    table, x, y = namespace["table"], namespace["x"], namespace["y"]
    assert 0 < table.counts.sum() <= len(y)  # the batch's estimates updated the table

    # the mixed batch: the input's shape, soft targets over the 5 classes summing to 1, built
    # with the README's convention (lam is the partner's share, timm's 1 - lam)
    x_mixed, y_soft, info = namespace["mixer"].mix_with_info(x, y)
    num_classes = len(namespace["counts"])
    assert x_mixed.shape == x.shape and y_soft.shape == (len(y), num_classes)
    torch.testing.assert_close(y_soft.sum(dim=1), torch.ones(len(y)))
    own, partner = F.one_hot(y, num_classes), F.one_hot(y[info.partner], num_classes)
    lam = info.lam.to(y_soft.dtype)[:, None]
    torch.testing.assert_close(y_soft, (1 - lam) * own + lam * partner)

    # a training step changes every parameter of the user's model and updates the table again
    model = namespace["model"]
    before = [parameter.detach().clone() for parameter in model.parameters()]
    updates = table.counts.sum()
    namespace["train_step"](x, y)
    assert all(not torch.equal(old, new) for old, new in zip(before, model.parameters()))
    assert table.counts.sum() > updates


def test_python_api_example_trains_evaluates_predicts_and_exports(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the example writes data/, runs/ and files where it runs
    namespace: dict = {}
    exec(compile(_example("python-api"), "README.md", "exec"), namespace)
    shapmix = namespace["shapmix"]
    assert capsys.readouterr().out.splitlines()[0] == shapmix.__version__
    assert (tmp_path / "runs" / "tiny" / "last.pt").exists() and (tmp_path / "tiny.pt").exists()
    top = namespace["report"].predictions[0].top
    assert len(top) == 3 and 0 < sum(p for _, _, p in top) <= 1 + 1e-6
    assert namespace["metrics"].num_samples == 16


def test_import_shapmix_is_light_and_exports_the_public_names():
    code = (
        "import sys, shapmix; heavy = [m for m in ('torch', 'matplotlib') if m in sys.modules]; "
        "assert not heavy, heavy; "
        "names = ['build_model', 'load_original_checkpoint', 'STMix', 'ShapMix', 'SaliencyTable', "
        "'load_config', 'train', 'evaluate_checkpoint', 'predict']; "
        "assert set(names) <= set(shapmix.__all__) and all(callable(getattr(shapmix, n)) for n in names); "
        "assert 'matplotlib' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    assert (SRC / "shapmix" / "py.typed").exists()


def test_readme_starts_with_the_two_commands():
    lines = README.read_text(encoding="utf-8").split("```bash\n", 1)[1].split("```")[0].strip().splitlines()
    assert lines == [
        "pip install -c constraints.txt -e . && shapmix train",
        'pip install -c constraints.txt -e ".[test]" && python -m pytest -q',
    ]
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert lines[1] in ci


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def test_multi_node_section_names_real_config_keys_and_a_valid_sbatch_command():
    from shapmix.config import Config, load_config

    section = _section("Multi-node and SLURM")
    sections = "|".join(Config.model_fields)
    keys = set(re.findall(rf"`((?:{sections})\.[a-z_]+)", section))
    assert {"train.batch_size", "train.eval_batch_size", "optim.lr", "method.estimate_fraction"} <= keys
    for key in keys:
        group, name = key.split(".")
        assert name in Config.model_fields[group].annotation.model_fields, key

    script = re.search(r"```bash\n(#!/bin/bash\n.*?)```", section, re.S).group(1)
    assert "#SBATCH --nodes=" in script and 'scontrol show hostnames "$SLURM_JOB_NODELIST"' in script
    launch = script.split("srun torchrun", 1)[1].replace("\\\n", " ").split()
    for option in ("--nnodes", "--nproc-per-node", "--rdzv-endpoint", "--rdzv-id"):
        assert option in launch, option
    assert launch[launch.index("--rdzv-backend") + 1] == "c10d"
    arguments = launch[launch.index("train") + 1 :]
    assert "--resume" in arguments and "--out" in arguments
    config = load_config(arguments[arguments.index("--config") + 1], [a for a in arguments if "=" in a])
    assert config.train.batch_size % int(launch[launch.index("--nproc-per-node") + 1]) == 0


def test_gpu_check_command_is_the_scripts_own():
    command = "python benchmarks/gpu_check.py > gpu_check.json"
    assert command in _section("GPU check")
    assert command in (README.parent / "benchmarks" / "gpu_check.py").read_text(encoding="utf-8")
