
import pytest
import torch
import torch.nn.functional as F

from shapmix.data.transforms import (
    CropResize,
    RandomRotation,
    bone_vectors,
    build_pipeline,
    resample_frames,
    rotation_matrices,
    temporal_difference,
    to_modality,
)
from shapmix.skeleton.layouts import get_layout


def _batch(n=4, c=3, t=50, v=25, m=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, t, v, m, generator=g)


def test_resample_matches_f_interpolate_per_sample():
    x = _batch(t=80)
    start = torch.tensor([0, 5, 17, 30])
    length = torch.tensor([80, 40, 63, 7])
    out = resample_frames(x, start, length, 64)
    for i in range(len(x)):
        crop = x[i, :, start[i] : start[i] + length[i]]
        c, t, v, m = crop.shape
        flat = crop.permute(0, 2, 3, 1).reshape(1, c * v * m, t)
        ref = F.interpolate(flat, size=64, mode="linear", align_corners=False)
        ref = ref.reshape(c, v, m, 64).permute(0, 3, 1, 2)
        torch.testing.assert_close(out[i], ref, rtol=1e-5, atol=1e-5)


def test_random_crop_respects_bounds_and_min_frames():
    crop = CropResize(window=64, p_interval=(0.5, 1.0), min_frames=30, random=True)
    lengths = torch.tensor([300, 100, 40, 10] * 50)
    start, size = crop.crop_bounds(lengths, torch.Generator().manual_seed(1))
    assert (start >= 0).all() and (start + size <= lengths).all()
    assert (size >= torch.minimum(torch.tensor(30), lengths)).all()
    assert (size <= lengths).all()
    # fractions actually vary between 0.5 and 1 for long sequences
    frac = size[lengths == 300].double() / 300
    assert frac.min() < 0.6 and frac.max() > 0.9


def test_central_crop_is_ctrgcn_arithmetic():
    crop = CropResize(window=64, p_interval=(0.95, 0.95), random=False)
    start, size = crop.crop_bounds(torch.tensor([100, 41]))
    assert start.tolist() == [2, 1]  # int(0.05 * 100 / 2) = 2; int(0.05 * 41 / 2) = 1
    assert size.tolist() == [96, 39]


def test_crop_resize_ignores_padding():
    x = _batch(t=100)
    x[:, :, 60:] = 1e6  # padding region must never be read
    out, lengths = CropResize(window=64, min_frames=10)(x, torch.full((4,), 60), torch.Generator().manual_seed(0))
    assert out.abs().max() < 1e3
    assert lengths.tolist() == [64] * 4


def test_rotation_matrices_are_orthonormal_and_identity_at_zero():
    angles = torch.rand(10, 3, dtype=torch.float64) * 2 - 1
    r = rotation_matrices(angles)
    torch.testing.assert_close(r @ r.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(10, 3, 3))
    torch.testing.assert_close(rotation_matrices(torch.zeros(1, 3)), torch.eye(3)[None])


def test_random_rotation_preserves_bone_lengths_and_zero_persons():
    x = _batch()
    x[:, :, :, :, 1] = 0
    out, _ = RandomRotation(0.3)(x, torch.full((4,), 50), torch.Generator().manual_seed(0))
    assert not torch.allclose(out, x)
    assert (out[..., 1] == 0).all()
    layout = get_layout("ntu25")
    torch.testing.assert_close(bone_vectors(out, layout).norm(dim=1), bone_vectors(x, layout).norm(dim=1))


def test_bone_and_motion_modalities():
    layout = get_layout("ntu25")
    x = _batch()
    bones = bone_vectors(x, layout)
    assert (bones[:, :, :, layout.root] == 0).all()
    child, parent = layout.bones[3]
    torch.testing.assert_close(bones[:, :, :, child], x[:, :, :, child] - x[:, :, :, parent])
    motion = temporal_difference(x)
    torch.testing.assert_close(motion[:, :, 5], x[:, :, 6] - x[:, :, 5])
    assert (motion[:, :, -1] == 0).all()
    torch.testing.assert_close(to_modality(x, "bone_motion", layout), temporal_difference(bones))
    with pytest.raises(ValueError, match="unknown modality"):
        to_modality(x, "velocity", layout)


def test_pipeline_is_deterministic_given_generator():
    x = _batch(t=120)
    lengths = torch.tensor([120, 90, 70, 64])
    pipe = build_pipeline("ntu25", train=True, window=32, min_crop_frames=16)
    a, _ = pipe(x, lengths, torch.Generator().manual_seed(3))
    b, _ = pipe(x, lengths, torch.Generator().manual_seed(3))
    c, _ = pipe(x, lengths, torch.Generator().manual_seed(4))
    assert a.shape == (4, 3, 32, 25, 2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    test_pipe = build_pipeline("ntu25", train=False, window=32)
    torch.testing.assert_close(test_pipe(x, lengths)[0], test_pipe(x, lengths)[0])


def test_center_moves_first_visible_centre_joint_to_origin_and_keeps_absent_persons_zero():
    from shapmix.data.transforms import Center

    x = _batch(n=2, t=6)
    x[:, :, :, :, 1] = 0  # second person absent
    x[0, :, 0, :, 0] = 0  # sample 0: person 0 invisible in frame 0
    out, _ = Center(joint=1)(x, torch.full((2,), 6))
    assert torch.allclose(out[0, :, 1, 1, 0], torch.zeros(3))
    assert torch.allclose(out[1, :, 0, 1, 0], torch.zeros(3))
    assert (out[:, :, :, :, 1] == 0).all() and (out[0, :, 0, :, 0] == 0).all()
    # a pure translation: bones are unchanged
    layout = get_layout("ntu25")
    torch.testing.assert_close(bone_vectors(out, layout)[:, :, 1:], bone_vectors(x, layout)[:, :, 1:])
