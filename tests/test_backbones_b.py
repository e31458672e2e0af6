"""InfoGCN and HD-GCN in the library: every layout, Grad-CAM, every method through the engine,
InfoGCN's objective in a Shap-Mix run with exact resume, and the command line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import make_tiny_dataset, tiny_config, tiny_overrides, train_interrupted_then_resumed
from shapmix.cli import main
from shapmix.config import load_config
from shapmix.engine.checkpoint import load_checkpoint
from shapmix.engine.trainer import train
from shapmix.mixing import PartCombinations, gradcam_part_scores
from shapmix.models import InfoGCN, build_model
from shapmix.models.ctrgcn import CosineClassifier
from shapmix.skeleton.layouts import available_layouts, get_layout

MODELS = ["infogcn", "hdgcn"]
TINY = dict(base_channels=8, num_blocks=3)
# one optimisation step per epoch on the tiny dataset (28 training samples), no figures
ONE_STEP = ["train.batch_size=16", "log.plots=false"]
SHAPMIX = ["method.name=shapmix", "method.warmup_epochs=0", "method.estimate_fraction=1"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


def channels_of(layout: str) -> int:
    return 2 if layout in ("coco17", "openpose18") else 3  # 2D keypoint layouts


@pytest.mark.parametrize("layout", available_layouts())
@pytest.mark.parametrize("name", MODELS)
def test_every_layout_builds_at_tiny_width_and_gives_logits(name, layout):
    joints, channels = get_layout(layout).num_joints, channels_of(layout)
    model = build_model(name, num_classes=6, layout=layout, num_persons=2, in_channels=channels, **TINY)
    x = torch.randn(3, channels, 12, joints, 2)
    model.eval()
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
        assert logits.shape == (3, 6) and torch.isfinite(logits).all()
        assert features.shape == (6, model.out_channels, 3, joints)
        assert model.pool(features).shape == (3, model.out_channels)
        assert torch.equal(model.head(features, 2), logits)


@pytest.mark.parametrize("layout", ["ntu25", "coco17"])
@pytest.mark.parametrize("name", MODELS)
def test_gradcam_part_scores_run(name, layout):
    joints, channels = get_layout(layout).num_joints, channels_of(layout)
    model = build_model(name, num_classes=4, layout=layout, num_persons=2, in_channels=channels, **TINY)
    model.train()
    combinations = PartCombinations.from_layout(layout)
    scores = gradcam_part_scores(model, torch.randn(5, channels, 12, joints, 2), torch.tensor([0, 1, 2, 3, 0]), combinations)
    assert scores.shape == (5, len(combinations)) and (scores >= 0).all() and torch.isfinite(scores).all()
    assert model.training and all(p.grad is None for p in model.parameters())


METHODS = {
    "stmix": ["method.name=stmix"],
    "shapmix-exact": SHAPMIX + ["method.shapley_estimator=exact"],
    "shapmix-sampled": SHAPMIX + ["method.shapley_estimator=sampled"],
    "shapmix-random": SHAPMIX + ["method.guidance=random"],
    "shapmix-gradcam": SHAPMIX + ["method.guidance=gradcam"],
    "glmc": ["method.name=glmc", "loss.name=ce"],
    "ldam-cosine": ["loss.name=ldam", "model.args.classifier=cosine"],
}


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("name", MODELS)
def test_one_training_step_of_every_method(tiny_data, tmp_path, name, method):
    config = tiny_config(tiny_data, epochs=1, extra=[f"model.name={name}", *ONE_STEP, *METHODS[method]])
    result = train(config, tmp_path / "run")
    assert np.isfinite(result["test"]["top1"])
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["history"][0]["epoch"] == 1 and np.isfinite(state["history"][0]["loss"])
    if method.startswith("shapmix"):
        assert state["method"]["table"]["counts"].sum() > 0  # the saliency table was fed
    if method == "ldam-cosine":
        model = build_model(name, num_classes=4, layout="ntu25", num_persons=2, classifier="cosine", **TINY)
        classifier = model.decoder if name == "infogcn" else model.fc
        assert isinstance(classifier, CosineClassifier)
        assert set(state["model"]) == set(model.state_dict())


def test_infogcn_trains_its_objective_under_shapmix_and_balanced_softmax_and_resumes_exactly(tiny_data, tmp_path, monkeypatch):
    calls = []
    objective = InfoGCN.auxiliary_loss

    def recording_objective(self, latent, targets):
        calls.append((tuple(latent.shape), tuple(targets.shape), targets.sum(dim=1)))
        return objective(self, latent, targets)

    monkeypatch.setattr(InfoGCN, "auxiliary_loss", recording_objective)
    extra = ["model.name=infogcn", "loss.name=balanced_softmax", *ONE_STEP, *SHAPMIX]
    config = tiny_config(tiny_data, epochs=2, extra=extra)
    train(config, tmp_path / "full")
    # every step: the clean and the mixed half of one forward pass, with their target distributions
    assert [(latent, targets) for latent, targets, _ in calls] == [((32, 32), (32, 4))] * 2
    assert all(torch.allclose(sums, torch.ones(32)) for _, _, sums in calls)

    train_interrupted_then_resumed(config, tmp_path / "resumed")
    full = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    resumed = load_checkpoint(tmp_path / "resumed" / "last.pt")["model"]
    assert full.keys() == resumed.keys() and "z_prior" in full
    for key in full:
        assert torch.equal(full[key], resumed[key]), key
    torch.manual_seed(config.train.seed)  # the trainer builds the model right after seeding
    fresh = build_model("infogcn", num_classes=4, layout="ntu25", num_persons=2, **TINY)
    assert torch.equal(full["z_prior"], fresh.z_prior)  # fixed priors, saved with the run


def test_command_line_and_config_know_both_models(tiny_data, tmp_path, capsys):
    overrides = tiny_overrides(tiny_data, epochs=1) + ONE_STEP
    assert main(["train", "--out", str(tmp_path / "hd"), *overrides, "model.name=hdgcn", "model.args.center=spine_base"]) == 0
    assert "hdgcn" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['k'\] for model 'infogcn'.*relative_order"):
        load_config(None, ["model.name=infogcn", "model.args.k=1"])
