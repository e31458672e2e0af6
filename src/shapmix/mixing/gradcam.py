"""Grad-CAM body-part saliency: the "Grad-CAM" guidance of Shap-Mix's ablation (paper Table 8).

Instead of Shapley values, the saliency of a part combination for a sample ``(x, y)`` is the
Grad-CAM map (Selvaraju et al., ICCV 2017) of the true class on the backbone's last block,
pooled per joint and averaged over the combination's joints:

* ``A = features(x)``, ``(N*M, C, T', V)``, the last block's output (persons of a sample
  contiguous, as :meth:`~shapmix.models.CTRGCN.forward_features` returns them);
* ``w[c] = mean_{t, v} d logit_y / d A[c, t, v]``, one weight per channel and person-sample;
* ``CAM = relu(sum_c w[c] A[c])``, ``(N*M, T', V)``, summed over persons and time to
  ``(N, V)`` and normalised per sample to sum to 1 over the joints (so that samples with
  large and small activations weigh alike in the table's average);
* ``score[n, s] = mean of the normalised CAM over the joints of combination s``.

A per-joint mean (like the Shapley table's division by joint counts, Eq. 3) keeps combinations
of different sizes comparable.  Joints carry ``1 / V`` of the mass on average, so the scores of
a table fed by Grad-CAM live on a scale of ``1 / V``; the temperature ``tau`` acts on that scale.

The model runs in eval mode (batch norm uses its running statistics, dropout is off) and the
train/eval flag of every submodule is restored afterwards.  The backbone runs without
gradients; only the classifier head is differentiated, with :func:`torch.autograd.grad` with
respect to the features, so no gradient reaches (or accumulates in) the model's parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from .parts import PartCombinations
from .shapley import evaluation_mode

__all__ = ["gradcam_joint_maps", "gradcam_part_scores", "last_block_gradients"]

_NORMALISATION_FLOOR = 1e-12
"""Smallest per-sample CAM total divided by; an all-zero map stays all zero."""


def last_block_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The last block's features and the gradient of each sample's true-class logit w.r.t. them.

    Uses ``model.forward_features(x)`` (run without gradients) and ``model.head(features,
    num_persons)`` when the model has both (as :class:`~shapmix.models.CTRGCN` does); otherwise
    a forward hook on ``model.last_block`` captures its output during ``model(x)``.  The model is
    in eval mode meanwhile (samples are then independent, so the gradient of the summed logits
    gives each sample's own gradient) and its train/eval flags are restored afterwards.

    Args:
        model: a backbone with ``forward_features`` and ``head``, or with a ``last_block``
            module whose output is ``(N*M, C, T', V)``.
        x: ``(N, C, T, V, M)`` model inputs.
        y: ``(N,)`` int64 true classes.

    Returns:
        ``(features, gradients)``, both ``(N*M, C, T', V)``, detached.

    Raises:
        TypeError: if the model offers neither interface.
    """
    num_persons = x.shape[-1]
    y = y.to(x.device)
    with evaluation_mode(model):
        if hasattr(model, "forward_features") and hasattr(model, "head"):
            features = model.forward_features(x).detach().requires_grad_(True)
            with torch.enable_grad():
                logits = model.head(features, num_persons)
        elif isinstance(getattr(model, "last_block", None), nn.Module):
            captured: list[torch.Tensor] = []

            def capture(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
                leaf = output.detach().requires_grad_(True)
                captured.append(leaf)
                return leaf

            handle = model.last_block.register_forward_hook(capture)
            try:
                with torch.enable_grad():
                    logits = model(x)
            finally:
                handle.remove()
            features = captured[-1]
        else:
            raise TypeError(
                f"Grad-CAM needs a model with forward_features() and head(), or a last_block module; "
                f"{type(model).__name__} has neither"
            )
        with torch.enable_grad():
            true_logits = logits.gather(1, y[:, None]).sum()
            (gradients,) = torch.autograd.grad(true_logits, features)
    return features.detach(), gradients


def gradcam_joint_maps(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-joint Grad-CAM of the true class, normalised per sample to sum to 1 over the joints.

    Args:
        model, x, y: see :func:`last_block_gradients`.

    Returns:
        ``(N, V)`` float32, non-negative; each row sums to 1 (or is all zero when the map is).
    """
    num_samples, num_persons = x.shape[0], x.shape[-1]
    features, gradients = last_block_gradients(model, x, y)
    channel_weights = gradients.float().mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((channel_weights * features.float()).sum(dim=1))  # (N*M, T', V)
    if cam.shape[0] != num_samples * num_persons:
        raise ValueError(f"last-block features hold {cam.shape[0]} person-samples, expected {num_samples} x {num_persons}")
    per_joint = cam.reshape(num_samples, num_persons, *cam.shape[1:]).sum(dim=(1, 2))  # (N, V)
    return per_joint / per_joint.sum(dim=1, keepdim=True).clamp(min=_NORMALISATION_FLOOR)


def gradcam_part_scores(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, combinations: PartCombinations
) -> torch.Tensor:
    """Grad-CAM saliency of every part combination for every sample (module docstring).

    Args:
        model: see :func:`last_block_gradients`.
        x: ``(N, C, T, V, M)`` model inputs.
        y: ``(N,)`` int64 true classes.
        combinations: the part combinations of the model's layout (``S`` of them).

    Returns:
        ``(N, S)`` float32 on ``x.device``, non-negative: the mean normalised CAM over each
        combination's joints.
    """
    joint_maps = gradcam_joint_maps(model, x, y)
    if joint_maps.shape[1] != combinations.num_joints:
        raise ValueError(f"the model's features have {joint_maps.shape[1]} joints, the layout {combinations.num_joints}")
    tables = combinations.to(joint_maps.device)
    masks = tables.joint_masks.to(joint_maps.dtype)
    counts = tables.joint_counts.to(joint_maps.dtype)
    return (joint_maps @ masks.T) / counts
