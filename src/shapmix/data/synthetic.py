"""The built-in synthetic long-tailed skeleton benchmark (NTU RGB+D 25-joint layout, metres).

It is the default dataset of ``shapmix train``: no download, generated in seconds, seeded (the
same :class:`SynthConfig` gives byte-identical arrays), and with known ground truth: every class
is defined by motions of 1 to 3 named body parts, saved as ``metadata["salient_parts"]``, which
is exactly what Shap-Mix's part saliency should recover.

Generative model
----------------
1. **Classes** (:func:`make_class_specs`).  Every body part has a small *vocabulary* of
   motions: motion primitives (raise, wave, punch, swing, circle, kick, knee raise, bow, lean,
   nod, ...) with fixed amplitude, tempo (oscillation cycles or pulse count), phase, ramp and a
   tilt of the rotation axes.  A class performs one vocabulary motion on each of its 1 to 3
   salient parts; no two classes have the same combination.  A part's motion is therefore
   usually shared by several classes (as "drink water" and "eat meal" share an arm) and
   usually only the combination of its salient parts identifies a class.  (No class's motions
   contain another's, but a motion is not required to be needed: a three-part class may be
   told apart by two of its motions.)  A fraction of classes are two-person interactions: the
   partner performs vocabulary motions on the same parts, with a delay, and the two approach
   or back away.
2. **Subjects** (:func:`make_subjects`).  A finite set of performers, each with a body scale, a
   per-bone length factor and a "vigour" (amplitude gain).  Train and test performers are
   disjoint by default (cross-subject, as NTU's x-sub protocol).
3. **Sequences** (:func:`synthesize_sequences`).  Per sample: a duration, a monotone time warp
   (speed changes within the action), an action window, per-primitive jitter of amplitude, tempo
   and phase, a resting posture, idle body sway, and *nuisance* gestures on non-salient parts
   (at reduced amplitude, in random sub-windows), drawn from the primitives that no class uses
   on that part, so a part performs a class's motion only when it is salient.
4. **Kinematics**.  Motions are joint-angle trajectories: a rotation vector per bone (pivoting at
   the bone's parent joint, expressed in the parent bone's frame).  Forward kinematics over the
   layout's bone tree (re-rooted at the spine base, the natural pelvis root) places the joints,
   so every bone keeps its subject-specific length throughout a sequence.  The body is then put
   on the ground (its lowest foot joint stays at rest height, so squats lower the body and a
   kick lifts one leg only).
5. **Scene and sensor**.  The body (or the facing pair) is yawed, placed 2.5-3.5 m in front of a
   Kinect-like camera (x right, y up, z depth, metres) with random yaw, tilt and offset; then
   Gaussian jitter of a few millimetres and occasional tracking dropouts (a joint frozen or
   jumping, a whole body frozen or zeroed, for a few frames).
6. **Splits** (:func:`generate_synthetic`).  A balanced training pool and a balanced test set
   are generated; the long-tailed ``train`` split is drawn from the pool with
   :func:`~shapmix.data.longtail.make_longtail_split`, an optional balanced ``val`` split from
   the pool's remainder, and ``test`` stays balanced.

Arrays follow the project format: ``(N, C=3, T, V=25, M=2)`` float32, zero after each sample's
valid length, the second person all zeros when absent.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from typing import Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..skeleton.layouts import NTU25
from .format import SkeletonData, write_dataset
from .longtail import make_longtail_split, sample_per_class

__all__ = [
    "GENERATOR_VERSION",
    "SYNTH_LAYOUT",
    "SynthConfig",
    "Motion",
    "ClassSpec",
    "Subjects",
    "primitive_names",
    "make_class_specs",
    "make_subjects",
    "synthesize_sequences",
    "generate_synthetic",
]

SYNTH_LAYOUT = NTU25
GENERATOR_VERSION = 2
"""Bumped whenever the same :class:`SynthConfig` starts producing different data, so caches keyed
on the settings (``shapmix train``'s) never serve data of an older generator."""
NUM_PERSONS = 2
NUM_CHANNELS = 3
PART_NAMES: tuple[str, ...] = NTU25.part_names

# ---------------------------------------------------------------------------------------------
# Skeleton: rest pose and the re-rooted bone tree
# ---------------------------------------------------------------------------------------------

# Rest pose of an average performer (scale 1), metres, body frame: x to the performer's right,
# y up, z backwards (the performer faces -z, i.e. the camera); spine base at the origin.
# Proportions follow Kinect v2 recordings of NTU RGB+D (bone lengths measured on real files).
_REST_POSE = {
    "spine_base": (0.0, 0.0, 0.0),
    "spine_mid": (0.0, 0.27, 0.0),
    "spine_shoulder": (0.0, 0.47, 0.0),
    "neck": (0.0, 0.54, 0.0),
    "head": (0.0, 0.67, 0.01),
    "right_shoulder": (0.16, 0.44, 0.0),
    "right_elbow": (0.19, 0.21, 0.02),
    "right_wrist": (0.2, -0.02, 0.0),
    "right_hand": (0.2, -0.08, 0.0),
    "right_thumb": (0.19, -0.11, -0.03),
    "right_hand_tip": (0.2, -0.14, 0.0),
    "right_hip": (0.08, -0.03, 0.0),
    "right_knee": (0.09, -0.39, 0.0),
    "right_ankle": (0.09, -0.75, 0.03),
    "right_foot": (0.09, -0.79, -0.07),
}
for _name, (_x, _y, _z) in list(_REST_POSE.items()):
    if _name.startswith("right_"):
        _REST_POSE["left_" + _name[len("right_"):]] = (-_x, _y, _z)

_JOINT = {name: index for index, name in enumerate(NTU25.joint_names)}
REST_POSE = np.array([_REST_POSE[name] for name in NTU25.joint_names], dtype=np.float64)
"""``(V, 3)`` rest pose of the average performer, metres, body frame."""

# The layout's tree is rooted at the spine shoulder; kinematics runs on the same bones re-rooted
# at the spine base, so torso bends pivot at the pelvis and leave the legs in place.
KINEMATIC_ROOT = _JOINT["spine_base"]


def _reroot(bones: tuple[tuple[int, int], ...], root: int, num_joints: int):
    neighbours: list[list[int]] = [[] for _ in range(num_joints)]
    for a, b in bones:
        neighbours[a].append(b)
        neighbours[b].append(a)
    parent = [root] * num_joints
    order, seen = [root], {root}
    for joint in order:  # breadth-first: parents always precede their children
        for other in neighbours[joint]:
            if other not in seen:
                seen.add(other)
                parent[other] = joint
                order.append(other)
    return np.array(parent), np.array(order)


FK_PARENT, FK_ORDER = _reroot(NTU25.bones, KINEMATIC_ROOT, NTU25.num_joints)
BONE_OFFSETS = REST_POSE - REST_POSE[FK_PARENT]
"""``(V, 3)`` rest vector from each joint's kinematic parent to the joint (root: zero)."""

FOOT_JOINTS = np.array([
    _JOINT[n] for n in ("left_ankle", "left_foot", "right_ankle", "right_foot")
])
# Joints a Kinect loses most often (hands and feet): targets of single-joint dropouts.
DROPOUT_JOINTS = np.array([
    _JOINT[n] for n in (
        "left_wrist", "left_hand", "left_hand_tip", "left_thumb", "right_wrist", "right_hand",
        "right_hand_tip", "right_thumb", "left_ankle", "left_foot", "right_ankle", "right_foot",
    )
])

# ---------------------------------------------------------------------------------------------
# Motion primitives
# ---------------------------------------------------------------------------------------------

HOLD, OSC, PULSE = 0, 1, 2
"""Temporal profiles over the action time ``a`` in [0, 1]: a smooth plateau, an oscillation
``sin(2 pi k a + phase)`` under that plateau envelope, and ``n`` unipolar bumps
``sin^2(pi n a)``."""

# A primitive is a tuple of components (bone, rotation vector at unit amplitude in radians,
# profile, phase offset).  The bone is named by its child joint; its rotation pivots at the
# parent joint in the parent bone's frame.  Arm and leg primitives are written for the right
# side ("R" stands for the side) and mirrored for the left.  Signs in the body frame: +x bends a
# hanging limb forward (arm or hip flexion, elbow flexion), -x bends the knee and the spine
# forward, +z abducts a right limb.
_LIMB_PRIMITIVES = {
    "arm": {
        "raise_front": (("R_elbow", (1.5, 0.0, 0.0), HOLD, 0.0),),
        "raise_side": (("R_elbow", (0.0, 0.0, 1.4), HOLD, 0.0),),
        "wave": (
            ("R_elbow", (0.0, 0.0, 1.3), HOLD, 0.0),
            ("R_wrist", (0.0, 0.0, 1.4), HOLD, 0.0),
            ("R_wrist", (0.0, 0.0, 0.5), OSC, 0.0),
        ),
        "punch": (
            ("R_wrist", (2.0, 0.0, 0.0), HOLD, 0.0),
            ("R_elbow", (1.4, 0.0, 0.0), PULSE, 0.0),
            ("R_wrist", (-1.9, 0.0, 0.0), PULSE, 0.0),
        ),
        "swing": (("R_elbow", (0.9, 0.0, 0.0), OSC, 0.0),),
        "circle": (
            ("R_elbow", (0.0, 0.0, 0.6), HOLD, 0.0),
            ("R_elbow", (0.6, 0.0, 0.0), OSC, 0.0),
            ("R_elbow", (0.0, 0.0, 0.5), OSC, np.pi / 2),
        ),
        "hand_to_head": (
            ("R_elbow", (0.5, 0.0, 0.4), HOLD, 0.0),
            ("R_wrist", (2.3, 0.0, 0.0), HOLD, 0.0),
        ),
        "reach_up": (("R_elbow", (1.9, 0.0, 0.2), PULSE, 0.0),),
    },
    "leg": {
        "kick": (
            ("R_knee", (1.2, 0.0, 0.0), PULSE, 0.0),
            ("R_ankle", (-0.3, 0.0, 0.0), PULSE, 0.0),
        ),
        "knee_raise": (
            ("R_knee", (1.5, 0.0, 0.0), PULSE, 0.0),
            ("R_ankle", (-1.7, 0.0, 0.0), PULSE, 0.0),
        ),
        "side_lift": (("R_knee", (0.0, 0.0, 0.9), PULSE, 0.0),),
        "leg_swing": (("R_knee", (0.6, 0.0, 0.0), OSC, 0.0),),
        "bend_knee": (
            ("R_knee", (1.2, 0.0, 0.0), HOLD, 0.0),
            ("R_ankle", (-2.0, 0.0, 0.0), HOLD, 0.0),
            ("R_foot", (0.8, 0.0, 0.0), HOLD, 0.0),
        ),
        "step_back": (
            ("R_knee", (-0.6, 0.0, 0.0), PULSE, 0.0),
            ("R_ankle", (-0.8, 0.0, 0.0), PULSE, 0.0),
        ),
    },
}
_TORSO_PRIMITIVES = {
    "bow": (
        ("spine_mid", (-0.7, 0.0, 0.0), PULSE, 0.0),
        ("head", (-0.3, 0.0, 0.0), PULSE, 0.0),
    ),
    "bend_down": (
        ("spine_mid", (-0.6, 0.0, 0.0), HOLD, 0.0),
        ("spine_shoulder", (-0.4, 0.0, 0.0), HOLD, 0.0),
    ),
    "lean_side": (
        ("spine_mid", (0.0, 0.0, 0.4), OSC, 0.0),
        ("spine_shoulder", (0.0, 0.0, 0.2), OSC, 0.0),
    ),
    "rock": (
        ("spine_mid", (-0.4, 0.0, 0.0), OSC, 0.0),
        ("spine_shoulder", (-0.25, 0.0, 0.0), OSC, 0.0),
    ),
    "nod": (
        ("spine_shoulder", (-0.35, 0.0, 0.0), OSC, 0.0),
        ("neck", (-0.5, 0.0, 0.0), OSC, 0.0),
        ("head", (-0.7, 0.0, 0.0), OSC, 0.0),
    ),
}


def _mirror(rotvec: tuple[float, float, float]) -> tuple[float, float, float]:
    """A rotation vector under the left-right reflection x -> -x (an axial vector)."""
    x, y, z = rotvec
    return (x, -y, -z)


def _build_library():
    """Flatten the primitives into per-part tables (all arrays indexed by primitive id)."""
    table = []  # (part index, primitive name, components)
    for part_index, part in enumerate(PART_NAMES):
        if part == "torso":
            entries = {name: comps for name, comps in _TORSO_PRIMITIVES.items()}
        else:
            side, kind = part.split("_")
            entries = {
                name: tuple(
                    (bone.replace("R", side, 1), rotvec if side == "right" else _mirror(rotvec),
                     profile, phase)
                    for bone, rotvec, profile, phase in comps
                )
                for name, comps in _LIMB_PRIMITIVES[kind].items()
            }
        for name, comps in entries.items():
            for bone, *_ in comps:
                if NTU25.part_of_joint[_JOINT[bone]] != part_index:
                    raise AssertionError(f"primitive {part}.{name} moves {bone} outside its part")
            table.append((part_index, name, comps))
    part = np.array([row[0] for row in table])
    names = [row[1] for row in table]
    counts = np.array([len(row[2]) for row in table])
    comps = [comp for row in table for comp in row[2]]
    return {
        "part": part,
        "name": names,
        "comp_start": np.concatenate([[0], np.cumsum(counts)[:-1]]),
        "comp_count": counts,
        "comp_joint": np.array([_JOINT[c[0]] for c in comps]),
        "comp_rotvec": np.array([c[1] for c in comps], dtype=np.float64),
        "comp_profile": np.array([c[2] for c in comps]),
        "comp_phase": np.array([c[3] for c in comps], dtype=np.float64),
        "part_start": np.searchsorted(part, np.arange(len(PART_NAMES))),
        "part_count": np.bincount(part, minlength=len(PART_NAMES)),
    }


_LIB = _build_library()


def primitive_names(part: str) -> list[str]:
    """Names of the motion primitives available to body part ``part``."""
    index = PART_NAMES.index(part)
    start, count = _LIB["part_start"][index], _LIB["part_count"][index]
    return _LIB["name"][start:start + count]


def _primitive_id(part: str, name: str) -> int:
    index = PART_NAMES.index(part)
    return int(_LIB["part_start"][index]) + primitive_names(part).index(name)


# ---------------------------------------------------------------------------------------------
# Fixed ranges of the generative model (the difficulty knobs live in SynthConfig)
# ---------------------------------------------------------------------------------------------

AMPLITUDE_RANGE = (0.7, 1.2)        # class amplitude multiplier of a primitive
OSC_CYCLES_RANGE = (1.5, 4.0)       # oscillation cycles over the action window
PULSE_COUNTS = (1, 2, 3)            # bumps of a pulse primitive
RAMP_RANGE = (0.12, 0.3)            # rise/fall fraction of the plateau envelope
SALIENT_PART_WEIGHTS = (0.2, 0.3, 0.3, 0.1, 0.1)  # how often each part (PART_NAMES order) acts
PARTNER_SAME_PRIMITIVE_PROB = 0.5   # an interaction partner mirrors the actor's primitive
PARTNER_DELAY_RANGE = (0.05, 0.25)  # partner's reaction delay, fraction of the action window
APPROACH_RANGE = (-0.25, 0.35)      # change of the pair's distance (m), > 0: they come closer
PAIR_DISTANCE_RANGE = (0.9, 1.4)    # distance between the two performers' pelvises (m)
PAIR_FACING_YAW = np.pi / 2         # the two performers face each other along the x axis
FACING_STD = 0.15                   # rad, performer not exactly facing the camera / partner
MAX_CLASS_DRAWS = 200               # redraws to avoid two classes with the same motions
VIGOUR_RANGE = (0.85, 1.15)         # subject amplitude gain
ACTION_ONSET_MAX = 0.15             # the action starts in [0, this] of the sequence...
ACTION_END_MIN = 0.85               # ...and ends in [this, 1]
NUISANCE_WINDOW_MIN = 0.4           # a nuisance gesture spans at least this action fraction
SWAY_CYCLES_RANGE = (0.3, 1.0)      # idle sway cycles per sequence
CAMERA_HEIGHT_RANGE = (-0.1, 0.3)   # pelvis height in camera coordinates (m)
DROPOUT_JUMP_RANGE = (0.1, 0.3)     # displacement of a jumping joint (m)
DROPOUT_KINDS = ("joint_freeze", "joint_jump", "body_freeze", "body_zero")
FK_CHUNK = 512                      # bodies per forward-kinematics chunk (bounds memory)

# Independent random streams derived from the seed.
_STREAM_CLASSES, _STREAM_SUBJECTS, _STREAM_SAMPLES, _STREAM_SPLITS = range(4)


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


class SynthConfig(BaseModel):
    """Every knob of the synthetic benchmark.  Difficulty is mostly set by ``nuisance_prob``,
    ``nuisance_amplitude``, ``motions_per_part``, ``amplitude_jitter``, ``tempo_jitter``,
    ``time_warp``, ``camera_yaw_deg``, ``jitter_std`` and ``dropout_prob``; the long tail by
    ``n_max``, ``imbalance_factor`` and ``profile``.

    Reference point for the defaults: a small 1-D temporal CNN (3 conv layers, 128 channels)
    trained 40 epochs with cross entropy on ``train`` reached 77% top-1 on ``test`` (Many 81%,
    Medium 95%, Few 57%).  Above ``nuisance_amplitude`` of about 0.6 the distractor gestures
    can out-move weak class motions (a nod), and the salient parts stop being the most moving
    ones."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, ge=0, description="master seed: classes, subjects, samples and splits")
    num_classes: int = Field(20, ge=2, le=200, description="number of action classes")
    frames: int = Field(64, ge=8, le=1000, description="T: frames per stored sample (max length)")
    min_frames: int = Field(40, ge=8, description="shortest valid length of a sample")
    max_frames: int = Field(64, ge=8, description="longest valid length (<= frames)")
    n_max: int = Field(200, ge=1, description="training samples of the head class")
    imbalance_factor: float = Field(50.0, ge=1.0, description="head count / tail count")
    profile: Literal["exponential", "pareto", "step"] = Field(
        "exponential", description="long-tail profile (see shapmix.data.longtail)"
    )
    samples_per_class: int | None = Field(
        None, ge=1,
        description="balanced training pool per class; None: n_max + val_per_class",
    )
    test_per_class: int = Field(30, ge=1, description="balanced test samples per class")
    val_per_class: int = Field(0, ge=0, description="balanced validation samples per class")
    keep_pool: bool = Field(
        False, description="store the whole balanced pool (split 'pool') so other long-tailed "
        "profiles can be drawn later; False synthesises and stores only train/val/test samples "
        "(the two settings give different random samples)",
    )
    num_subjects: int = Field(40, ge=2, le=999, description="number of distinct performers")
    cross_subject: bool = Field(
        True, description="test performers (odd ids) never appear in train/val (even ids)"
    )
    body_scale_range: tuple[float, float] = Field(
        (0.85, 1.15), description="range of the per-subject overall body scale"
    )
    bone_length_jitter: float = Field(
        0.05, ge=0.0, le=0.3, description="per-subject relative variation of each bone length"
    )
    two_person_fraction: float = Field(
        0.15, ge=0.0, le=1.0, description="fraction of classes that are two-person interactions"
    )
    salient_count_weights: tuple[float, float, float] = Field(
        (0.35, 0.45, 0.2), description="relative frequency of classes with 1, 2, 3 salient parts"
    )
    motions_per_part: int = Field(
        4, ge=1, le=5,
        description="size of each body part's motion vocabulary; classes combine vocabulary "
        "motions, so fewer motions per part means more classes share each part's motion",
    )
    axis_perturbation: float = Field(
        0.35, ge=0.0, le=np.pi, description="max tilt (rad) of a class's primitive rotation axes"
    )
    amplitude_jitter: float = Field(
        0.3, ge=0.0, le=0.9, description="per-sample relative amplitude variation (uniform +-)"
    )
    tempo_jitter: float = Field(
        0.15, ge=0.0, le=0.9, description="per-sample relative variation of oscillation cycles"
    )
    phase_jitter: float = Field(
        0.5, ge=0.0, le=2 * np.pi, description="per-sample phase std (rad)"
    )
    time_warp: float = Field(
        0.5, ge=0.0, lt=1.0, description="strength of the monotone speed warp (0: constant speed)"
    )
    posture_std: float = Field(
        0.06, ge=0.0, le=0.5, description="std (rad) of the per-sample resting joint angles"
    )
    idle_sway: float = Field(0.03, ge=0.0, le=0.3, description="amplitude (rad) of body sway")
    nuisance_prob: float = Field(
        0.8, ge=0.0, le=1.0,
        description="probability that a non-salient part performs a distractor gesture",
    )
    nuisance_amplitude: float = Field(
        0.5, ge=0.0, le=2.0, description="distractor amplitude relative to class motions"
    )
    camera_yaw_deg: float = Field(45.0, ge=0.0, le=180.0, description="max camera yaw (deg)")
    camera_tilt_deg: float = Field(10.0, ge=0.0, le=45.0, description="max camera tilt (deg)")
    distance_range: tuple[float, float] = Field(
        (2.5, 3.5), description="performer's depth from the camera (m)"
    )
    lateral_offset: float = Field(0.4, ge=0.0, le=2.0, description="max sideways offset (m)")
    jitter_std: float = Field(0.004, ge=0.0, le=0.1, description="sensor noise std (m)")
    dropout_prob: float = Field(
        0.1, ge=0.0, le=1.0, description="probability of a tracking dropout per body"
    )
    dropout_frames: tuple[int, int] = Field(
        (2, 6), description="min and max length (frames) of a dropout"
    )

    @model_validator(mode="after")
    def _check_ranges(self) -> SynthConfig:
        if not self.min_frames <= self.max_frames <= self.frames:
            raise ValueError("need min_frames <= max_frames <= frames")
        for name, low, high in (
            ("body_scale_range", 0.5, 2.0), ("distance_range", 0.5, 8.0),
        ):
            lo, hi = getattr(self, name)
            if not low <= lo <= hi <= high:
                raise ValueError(f"{name} must satisfy {low} <= lo <= hi <= {high}")
        lo, hi = self.dropout_frames
        if not 1 <= lo <= hi < self.min_frames:
            raise ValueError("dropout_frames must satisfy 1 <= lo <= hi < min_frames")
        weights = self.salient_count_weights
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError("salient_count_weights must be non-negative, not all zero")
        if self.pool_per_class < self.n_max + self.val_per_class:
            raise ValueError("samples_per_class must be >= n_max + val_per_class")
        if self.cross_subject and self.num_subjects < 4:
            raise ValueError("cross_subject needs at least 4 subjects (2 train, 2 test)")
        return self

    @property
    def pool_per_class(self) -> int:
        """Size of the balanced training pool per class."""
        if self.samples_per_class is None:
            return self.n_max + self.val_per_class
        return self.samples_per_class


# ---------------------------------------------------------------------------------------------
# Classes and subjects
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Motion:
    """One primitive of a class, performed by one person on one part.

    Attributes:
        person: 0 (actor) or 1 (interaction partner).
        part: body part name.
        primitive: primitive name (see :func:`primitive_names`).
        amplitude: multiplier of the primitive's joint angles.
        cycles: oscillation cycles over the action window.
        pulses: number of bumps of pulse components.
        phase: oscillation phase (rad).
        ramp: rise/fall fraction of the plateau envelope.
        delay: start of the motion within the action window (fraction; the partner reacts late).
        axis: ``3x3`` rotation (row-major) tilting the primitive's rotation axes.
    """

    person: int
    part: str
    primitive: str
    amplitude: float
    cycles: float
    pulses: int
    phase: float
    ramp: float
    delay: float
    axis: tuple[float, ...]


@dataclass(frozen=True)
class ClassSpec:
    """A synthetic action class: its name, ground-truth salient parts and motions."""

    name: str
    salient_parts: tuple[str, ...]
    two_person: bool
    motions: tuple[Motion, ...]
    approach: float = 0.0
    """Change of the pair's distance over the action (m); positive: they come closer."""


@dataclass(frozen=True)
class Subjects:
    """The performers: ``scale (S,)``, ``bone_offsets (S, V, 3)`` metres, ``vigour (S,)``."""

    scale: np.ndarray
    bone_offsets: np.ndarray
    vigour: np.ndarray

    @property
    def bone_lengths(self) -> np.ndarray:
        """``(S, V)`` length (m) of the bone from each joint's kinematic parent (root: 0)."""
        return np.linalg.norm(self.bone_offsets, axis=-1)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def _random_rotation(rng: np.random.Generator, max_angle: float, size: int) -> np.ndarray:
    """``(size, 3, 3)`` rotations about random axes by angles uniform in [0, max_angle]."""
    axes = rng.normal(size=(size, 3))
    axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
    return _rodrigues(axes * rng.uniform(0.0, max_angle, size=(size, 1)))


def _draw_motion(rng, config: SynthConfig, person: int, part: str, primitive: str,
                 delay: float = 0.0) -> Motion:
    return Motion(
        person=person,
        part=part,
        primitive=primitive,
        amplitude=float(rng.uniform(*AMPLITUDE_RANGE)),
        cycles=float(rng.uniform(*OSC_CYCLES_RANGE)),
        pulses=int(rng.choice(PULSE_COUNTS)),
        phase=float(rng.uniform(0.0, 2 * np.pi)),
        ramp=float(rng.uniform(*RAMP_RANGE)),
        delay=delay,
        axis=tuple(_random_rotation(rng, config.axis_perturbation, 1)[0].ravel().tolist()),
    )


def _part_vocabularies(rng, config: SynthConfig) -> dict[str, list[Motion]]:
    """Per body part, ``motions_per_part`` motions of distinct primitives (fewer if the part has
    fewer primitives), with their class-level parameters."""
    vocabularies = {}
    for part in PART_NAMES:
        names = primitive_names(part)
        size = min(config.motions_per_part, len(names))
        chosen = rng.choice(len(names), size=size, replace=False)
        vocabularies[part] = [_draw_motion(rng, config, 0, part, names[i]) for i in chosen]
    return vocabularies


def make_class_specs(config: SynthConfig) -> list[ClassSpec]:
    """The ``num_classes`` action classes, a pure function of ``config.seed`` and the class knobs.

    Class 0 is the head of the long tail.  Two-person classes are spread at random over the
    class order.  Each class draws its number of salient parts (``salient_count_weights``), the
    parts (``SALIENT_PART_WEIGHTS``) and one motion of each part's vocabulary.  A class whose
    (person, part, motion) set contains, or is contained in, an earlier class's is redrawn (up
    to ``MAX_CLASS_DRAWS`` times, then it is an error: too many classes for the vocabularies).
    So every motion of a multi-part class is needed to tell it from the classes that share
    its other motions, and a one-part class's motion is its own.
    """
    rng = _rng(config.seed, _STREAM_CLASSES)
    vocabularies = _part_vocabularies(rng, config)
    n_pairs = round(config.two_person_fraction * config.num_classes)
    pair_classes = set(rng.choice(config.num_classes, size=n_pairs, replace=False).tolist())
    count_p = np.asarray(config.salient_count_weights) / sum(config.salient_count_weights)
    part_p = np.asarray(SALIENT_PART_WEIGHTS)
    specs: list[ClassSpec] = []
    signatures: list[set[tuple[int, str, int]]] = []
    for c in range(config.num_classes):
        two_person = c in pair_classes
        for _ in range(MAX_CLASS_DRAWS):
            k = int(rng.choice(3, p=count_p)) + 1
            parts = rng.choice(PART_NAMES, size=k, replace=False, p=part_p).tolist()
            picks = [(part, int(rng.integers(len(vocabularies[part])))) for part in parts]
            motions = [vocabularies[part][index] for part, index in picks]
            signature = {(0, part, index) for part, index in picks}
            if two_person:
                for part, index in picks:
                    if rng.random() >= PARTNER_SAME_PRIMITIVE_PROB:
                        index = int(rng.integers(len(vocabularies[part])))
                    delay = float(rng.uniform(*PARTNER_DELAY_RANGE))
                    motions.append(replace(vocabularies[part][index], person=1, delay=delay))
                    signature.add((1, part, index))
            # No class's motions may contain another's: every pair of classes differs by a
            # motion present in each, never by a motion that one of them merely lacks.
            if not any(signature <= other or signature >= other for other in signatures):
                break
        else:
            raise ValueError(
                f"cannot draw {config.num_classes} distinct classes from vocabularies of "
                f"{config.motions_per_part} motions per part; raise motions_per_part"
            )
        signatures.append(signature)
        salient = tuple(p for p in PART_NAMES if p in parts)
        label = "+".join(f"{m.part}.{m.primitive}" for m in motions if m.person == 0)
        specs.append(ClassSpec(
            name=f"c{c:03d}_{'pair_' if two_person else ''}{label}",
            salient_parts=salient,
            two_person=two_person,
            motions=tuple(motions),
            approach=float(rng.uniform(*APPROACH_RANGE)) if two_person else 0.0,
        ))
    return specs


def make_subjects(config: SynthConfig) -> Subjects:
    """The ``num_subjects`` performers, a pure function of ``config.seed`` and body knobs."""
    rng = _rng(config.seed, _STREAM_SUBJECTS)
    n = config.num_subjects
    scale = rng.uniform(*config.body_scale_range, size=n)
    factor = rng.uniform(1 - config.bone_length_jitter, 1 + config.bone_length_jitter,
                         size=(n, NTU25.num_joints))
    vigour = rng.uniform(*VIGOUR_RANGE, size=n)
    offsets = BONE_OFFSETS[None] * (scale[:, None] * factor)[..., None]
    return Subjects(scale=scale, bone_offsets=offsets, vigour=vigour)


# ---------------------------------------------------------------------------------------------
# Kinematics helpers
# ---------------------------------------------------------------------------------------------


def _rodrigues(rotvec: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` from rotation vectors ``(..., 3)`` (radians).

    ``R = cos(t) I + sin(t)/t [r]x + (1 - cos(t))/t^2 r r^T`` with ``t = |r|``; the dtype of
    ``rotvec`` is kept.
    """
    x, y, z = (np.ascontiguousarray(rotvec[..., i]) for i in range(3))
    theta2 = x * x + y * y + z * z
    small = theta2 < 1e-12
    theta = np.sqrt(np.where(small, 1.0, theta2))
    cos = np.where(small, 1.0, np.cos(theta))
    a = np.where(small, 1.0, np.sin(theta) / theta)
    b = np.where(small, 0.5, (1.0 - cos) / (theta * theta))
    bx, by, bz = b * x, b * y, b * z
    ax, ay, az = a * x, a * y, a * z
    rows = (
        cos + bx * x, bx * y - az, bx * z + ay,
        bx * y + az, cos + by * y, by * z - ax,
        bx * z - ay, by * z + ax, cos + bz * z,
    )
    return np.stack(rows, axis=-1).reshape(*x.shape, 3, 3)


def _axis_rotation(angle: np.ndarray, axis: int) -> np.ndarray:
    """``(..., 3, 3)`` rotations by ``angle`` (radians) about coordinate axis 0 (x) or 1 (y)."""
    rotvec = np.zeros((*np.shape(angle), 3))
    rotvec[..., axis] = angle
    return _rodrigues(rotvec)


def _forward_kinematics(angles: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Joint positions from bone rotations.

    Args:
        angles: ``(B, V, T, 3)`` rotation vector of each bone (indexed by its child joint) in
            its parent bone's frame, radians; the root entry is the body's global orientation.
        offsets: ``(B, V, 3)`` rest vectors parent -> joint of each body, metres.

    Returns:
        ``(B, T, V, 3)`` positions in the body frame, the spine base at the origin.
    """
    rot = _rodrigues(angles)
    glob = np.empty_like(rot)
    pos = np.zeros(angles.shape, dtype=angles.dtype)
    glob[:, KINEMATIC_ROOT] = rot[:, KINEMATIC_ROOT]
    for joint in FK_ORDER[1:]:
        parent = FK_PARENT[joint]
        glob[:, joint] = glob[:, parent] @ rot[:, joint]
        bone = np.einsum("btij,bj->bti", glob[:, joint], offsets[:, joint])
        pos[:, joint] = pos[:, parent] + bone
    return pos.transpose(0, 2, 1, 3)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _plateau(a: np.ndarray, ramp: np.ndarray) -> np.ndarray:
    """Smooth 0 -> 1 -> 0 envelope over ``a`` in [0, 1], rising and falling over ``ramp``."""
    return _smoothstep(a / ramp) * _smoothstep((1.0 - a) / ramp)


# ---------------------------------------------------------------------------------------------
# Sequence synthesis
# ---------------------------------------------------------------------------------------------


def _class_tables(specs: list[ClassSpec]) -> dict[str, np.ndarray]:
    """Flatten every class's motions into arrays (one row per motion) plus per-class ranges."""
    rows = [m for spec in specs for m in spec.motions]
    counts = np.array([len(spec.motions) for spec in specs])
    return {
        "start": np.concatenate([[0], np.cumsum(counts)[:-1]]),
        "count": counts,
        "person": np.array([m.person for m in rows]),
        "prim": np.array([_primitive_id(m.part, m.primitive) for m in rows]),
        "amplitude": np.array([m.amplitude for m in rows]),
        "cycles": np.array([m.cycles for m in rows]),
        "pulses": np.array([m.pulses for m in rows], dtype=np.float64),
        "phase": np.array([m.phase for m in rows]),
        "ramp": np.array([m.ramp for m in rows]),
        "delay": np.array([m.delay for m in rows]),
        "axis": np.array([m.axis for m in rows]).reshape(-1, 3, 3),
        "salient": np.array([[p in spec.salient_parts for p in PART_NAMES] for spec in specs]),
        "nuisance_prims": _nuisance_primitives(rows),
        "two_person": np.array([spec.two_person for spec in specs]),
        "approach": np.array([spec.approach for spec in specs]),
    }


def _nuisance_primitives(motions: list[Motion]) -> np.ndarray:
    """``(P, L)`` primitive ids for nuisance gestures, per part padded with -1: the part's
    primitives that no class motion uses (all of them if the classes use every one)."""
    used = {_primitive_id(m.part, m.primitive) for m in motions}
    rows = []
    for index, part in enumerate(PART_NAMES):
        ids = [int(_LIB["part_start"][index]) + k for k in range(int(_LIB["part_count"][index]))]
        free = [i for i in ids if i not in used]
        rows.append(free or ids)
    table = np.full((len(rows), max(len(r) for r in rows)), -1)
    for index, row in enumerate(rows):
        table[index, : len(row)] = row
    return table


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For owners with ``counts`` items each: (owner of each item, rank of the item in it)."""
    owner = np.repeat(np.arange(len(counts)), counts)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return owner, np.arange(owner.size) - first[owner]


def _joint_angles(config, tables, labels, body_sample, body_person, vigour, action_time, rng):
    """``(B, V, T, 3)`` bone rotation vectors of every body: class motions, nuisance gestures,
    posture and sway.  ``action_time`` is ``(B, T)``, the warped action time in [0, 1]."""
    n_bodies, frames = action_time.shape
    body_label = labels[body_sample]

    # Class motions of each body (the actor's or the partner's rows of its class).
    owner, rank = _expand(tables["count"][body_label])
    row = tables["start"][body_label[owner]] + rank
    keep = tables["person"][row] == body_person[owner]
    owner, row = owner[keep], row[keep]
    n = owner.size
    amplitude_gain = 1 + rng.uniform(-config.amplitude_jitter, config.amplitude_jitter, size=n)
    tempo_gain = 1 + rng.uniform(-config.tempo_jitter, config.tempo_jitter, size=n)
    inst = {
        "body": owner,
        "prim": tables["prim"][row],
        "amplitude": tables["amplitude"][row] * amplitude_gain * vigour[owner],
        "cycles": tables["cycles"][row] * tempo_gain,
        "pulses": tables["pulses"][row],
        "phase": tables["phase"][row] + config.phase_jitter * rng.standard_normal(n),
        "ramp": tables["ramp"][row],
        "start": tables["delay"][row],
        "end": np.ones(n),
        "axis": tables["axis"][row],
    }

    # Nuisance gestures on non-salient parts: primitives no class performs on that part.
    active = rng.random((n_bodies, len(PART_NAMES))) < config.nuisance_prob
    active &= ~tables["salient"][body_label]
    n_body, n_part = np.nonzero(active)
    m = n_body.size
    nuisance_prims = tables["nuisance_prims"]
    start = rng.uniform(0.0, 1.0 - NUISANCE_WINDOW_MIN, size=m)
    nuisance = {
        "body": n_body,
        "prim": nuisance_prims[n_part, rng.integers(0, (nuisance_prims >= 0).sum(axis=1)[n_part])],
        "amplitude": (config.nuisance_amplitude * rng.uniform(*AMPLITUDE_RANGE, size=m)
                      * vigour[n_body]),
        "cycles": rng.uniform(*OSC_CYCLES_RANGE, size=m),
        "pulses": rng.choice(PULSE_COUNTS, size=m).astype(np.float64),
        "phase": rng.uniform(0.0, 2 * np.pi, size=m),
        "ramp": rng.uniform(*RAMP_RANGE, size=m),
        "start": start,
        "end": rng.uniform(start + NUISANCE_WINDOW_MIN, 1.0),
        "axis": _random_rotation(rng, config.axis_perturbation, m),
    }
    inst = {key: np.concatenate([inst[key], nuisance[key]]) for key in inst}

    # Expand instances into components and evaluate their temporal profiles.
    which, rank = _expand(_LIB["comp_count"][inst["prim"]])
    comp = _LIB["comp_start"][inst["prim"][which]] + rank
    a = np.clip(
        (action_time[inst["body"][which]] - inst["start"][which, None])
        / (inst["end"] - inst["start"])[which, None], 0.0, 1.0,
    )
    envelope = _plateau(a, inst["ramp"][which, None])
    profile = _LIB["comp_profile"][comp][:, None]
    phase = (inst["phase"][which] + _LIB["comp_phase"][comp])[:, None]
    oscillation = envelope * np.sin(2 * np.pi * inst["cycles"][which, None] * a + phase)
    pulses = np.sin(np.pi * inst["pulses"][which, None] * a) ** 2
    value = np.where(profile == HOLD, envelope, np.where(profile == OSC, oscillation, pulses))
    rotvec = np.einsum("kij,kj->ki", inst["axis"][which], _LIB["comp_rotvec"][comp])
    rotvec *= inst["amplitude"][which, None]
    joints = NTU25.num_joints
    target = inst["body"][which] * joints + _LIB["comp_joint"][comp]
    order = np.argsort(target, kind="stable")
    bones, first = np.unique(target[order], return_index=True)
    angles = np.zeros((n_bodies * joints, frames, 3))
    angles[bones] = np.add.reduceat(value[order, :, None] * rotvec[order, None, :], first, axis=0)
    angles = angles.reshape(n_bodies, joints, frames, 3)

    # Resting posture (constant) and slow body sway about the pelvis (x and z axes).
    angles += config.posture_std * rng.standard_normal((n_bodies, joints, 1, 3))
    s = np.linspace(0.0, 1.0, frames)
    cycles = rng.uniform(*SWAY_CYCLES_RANGE, size=(n_bodies, 1, 3))
    phase = rng.uniform(0.0, 2 * np.pi, size=(n_bodies, 1, 3))
    sway = config.idle_sway * np.sin(2 * np.pi * cycles * s[None, :, None] + phase)
    sway[..., 1] = 0.0
    angles[:, KINEMATIC_ROOT] += sway
    return angles


def synthesize_sequences(
    config: SynthConfig,
    labels: np.ndarray,
    subjects: np.ndarray,
    rng: np.random.Generator,
    partners: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate skeleton sequences in memory.

    Args:
        config: generator settings (class and subject definitions follow from its seed).
        labels: ``(N,)`` class ids in ``0..num_classes-1``.
        subjects: ``(N,)`` performer ids in ``0..num_subjects-1``.
        rng: source of every per-sample random draw (same state, same arrays).
        partners: ``(N,)`` partner performer ids for two-person classes (ignored for the
            others); None draws a partner different from the performer.

    Returns:
        ``data`` float32 ``(N, 3, T, 25, 2)``: Kinect camera-space coordinates in metres
        (x right, y up, z depth), zero after each sample's length, person 2 all zeros in
        one-person classes; ``lengths`` int64 ``(N,)`` valid frames.
    """
    # Every step draws from ``rng`` in turn: their order fixes the generated arrays.
    labels, subjects = _checked_ids(config, labels, subjects)
    n = labels.size
    tables = _class_tables(make_class_specs(config))
    people = make_subjects(config)
    if partners is None:
        partners = (subjects + rng.integers(1, config.num_subjects, size=n)) % config.num_subjects
    bodies = _bodies(tables, labels, subjects, np.asarray(partners, dtype=np.int64))
    lengths, action_time = _action_times(config, n, rng)
    angles = _joint_angles(config, tables, labels, bodies.sample, bodies.person,
                           people.vigour[bodies.subject], action_time[bodies.sample], rng)
    pos = _posed_bodies(angles, people, bodies.subject)
    facing, side = _scene_layout(tables, labels, bodies, action_time, rng)
    camera, shift = _camera_views(config, n, rng)
    camera, shift = camera[bodies.sample], shift[bodies.sample]
    to_camera = camera @ _axis_rotation(facing, 1)
    pos = (pos.reshape(len(pos), -1, 3) @ to_camera.swapaxes(-1, -2)).reshape(pos.shape)
    pos += (shift[:, None, :] + side[..., None] * camera[:, None, :, 0])[:, :, None, :]
    # Sensor: Gaussian jitter, then tracking dropouts (which repeat or zero jittered frames).
    if config.jitter_std > 0:
        pos += config.jitter_std * rng.standard_normal(pos.shape)
    _apply_dropouts(config, pos, lengths[bodies.sample], rng)
    return _samples_of(pos, bodies, lengths), lengths.astype(np.int64)


class _Bodies(NamedTuple):
    """The bodies of a batch of ``N`` samples: every sample's actor (bodies ``0..N-1``), then
    the partners of the two-person samples (body ``N + k`` partners sample ``paired[k]``).

    Attributes:
        sample: ``(B,)`` the sample of each body.
        person: ``(B,)`` 0 for the actor, 1 for the partner.
        subject: ``(B,)`` the performer of each body.
        paired: ``(P,)`` the two-person samples, ascending.
    """

    sample: np.ndarray
    person: np.ndarray
    subject: np.ndarray
    paired: np.ndarray


def _checked_ids(
    config: SynthConfig, labels: np.ndarray, subjects: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` and ``subjects`` as int64 arrays of one shape, checked to lie in range."""
    labels = np.asarray(labels, dtype=np.int64)
    subjects = np.asarray(subjects, dtype=np.int64)
    n = labels.size
    if subjects.shape != labels.shape:
        raise ValueError("labels and subjects must have the same shape")
    if n and (labels.min() < 0 or labels.max() >= config.num_classes):
        raise ValueError(f"labels must lie in 0..{config.num_classes - 1}")
    if n and (subjects.min() < 0 or subjects.max() >= config.num_subjects):
        raise ValueError(f"subjects must lie in 0..{config.num_subjects - 1}")
    return labels, subjects


def _bodies(
    tables: dict[str, np.ndarray], labels: np.ndarray, subjects: np.ndarray, partners: np.ndarray
) -> _Bodies:
    """Every sample's actor, then the partners of the samples of two-person classes."""
    n = labels.size
    paired = np.flatnonzero(tables["two_person"][labels])
    return _Bodies(
        sample=np.concatenate([np.arange(n), paired]),
        person=np.repeat([0, 1], [n, paired.size]),
        subject=np.concatenate([subjects, partners[paired]]),
        paired=paired,
    )


def _action_times(
    config: SynthConfig, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(lengths (N,), action_time (N, T))``: each sample's valid frames, and its warped
    action time in [0, 1] (0 before the action's onset, 1 after its end).

    A monotone time warp w(s) = s + b1 sin(2 pi s) / 2 pi + b2 sin(4 pi s) / 4 pi with
    |b1| + |b2| <= time_warp < 1 (so w' > 0), then the action window inside it.
    """
    lengths = rng.integers(config.min_frames, config.max_frames + 1, size=n)
    t = np.arange(config.frames)
    s = np.minimum(t[None, :] / (lengths[:, None] - 1), 1.0)
    b1 = config.time_warp * rng.uniform(-1, 1, size=(n, 1))
    b2 = (config.time_warp - np.abs(b1)) * rng.uniform(-1, 1, size=(n, 1))
    warped = s + b1 * np.sin(2 * np.pi * s) / (2 * np.pi) + b2 * np.sin(4 * np.pi * s) / (4 * np.pi)
    onset = rng.uniform(0.0, ACTION_ONSET_MAX, size=(n, 1))
    end = rng.uniform(ACTION_END_MIN, 1.0, size=(n, 1))
    return lengths, np.clip((warped - onset) / (end - onset), 0.0, 1.0)


def _posed_bodies(angles: np.ndarray, people: Subjects, body_subject: np.ndarray) -> np.ndarray:
    """``(B, T, V, 3)`` joint positions (m) of the bodies' ``(B, V, T, 3)`` bone rotations, each
    with its performer's bones, standing on the floor.

    Kinematics run in float32, the stored precision, in chunks that bound the memory used; the
    lowest foot joint then stays at the performer's rest foot height (ground contact).
    """
    n_bodies, _, frames, _ = angles.shape
    pos = np.empty((n_bodies, frames, NTU25.num_joints, 3))
    for lo in range(0, n_bodies, FK_CHUNK):
        hi = min(lo + FK_CHUNK, n_bodies)
        offsets = people.bone_offsets[body_subject[lo:hi]].astype(np.float32)
        pos[lo:hi] = _forward_kinematics(angles[lo:hi].astype(np.float32), offsets)
    rest_floor = (REST_POSE[FOOT_JOINTS, 1][None, :] * people.scale[body_subject, None]).min(axis=1)
    pos[..., 1] += (rest_floor[:, None] - pos[..., FOOT_JOINTS, 1].min(axis=-1))[..., None]
    return pos


def _scene_layout(
    tables: dict[str, np.ndarray],
    labels: np.ndarray,
    bodies: _Bodies,
    action_time: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """``(facing (B,), side (B, T))``: each body's yaw (rad) and the x position (m) of its pelvis
    in the scene.  A single performer faces the camera; a pair faces each other along x, their
    distance changing by the class's approach over the action."""
    n, paired = labels.size, bodies.paired
    facing = FACING_STD * rng.standard_normal(bodies.sample.size)
    facing[n:] += PAIR_FACING_YAW
    facing[paired] -= PAIR_FACING_YAW
    side = np.zeros((bodies.sample.size, action_time.shape[1]))
    distance = rng.uniform(*PAIR_DISTANCE_RANGE, size=(paired.size, 1))
    distance = distance - tables["approach"][labels[paired], None] * _plateau(
        action_time[paired], np.full((paired.size, 1), RAMP_RANGE[1]))
    side[paired] = -distance / 2
    side[n:] = distance / 2
    return facing, side


def _camera_views(
    config: SynthConfig, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(rotation (N, 3, 3), shift (N, 3))`` of each sample's camera: a yaw and tilt about the
    scene, then the scene placed in front of it (sideways, height, distance in m)."""
    yaw = np.deg2rad(config.camera_yaw_deg) * rng.uniform(-1, 1, size=n)
    tilt = np.deg2rad(config.camera_tilt_deg) * rng.uniform(-1, 1, size=n)
    camera = _axis_rotation(tilt, 0) @ _axis_rotation(yaw, 1)
    shift = np.stack([
        rng.uniform(-config.lateral_offset, config.lateral_offset, size=n),
        rng.uniform(*CAMERA_HEIGHT_RANGE, size=n),
        rng.uniform(*config.distance_range, size=n),
    ], axis=-1)
    return camera, shift


def _samples_of(pos: np.ndarray, bodies: _Bodies, lengths: np.ndarray) -> np.ndarray:
    """The bodies' ``(B, T, V, 3)`` positions as ``(N, 3, T, V, 2)`` float32 samples, zero after
    each sample's length and for the absent partner of one-person samples."""
    n, frames = lengths.size, pos.shape[1]
    data = np.zeros((n, NUM_CHANNELS, frames, NTU25.num_joints, NUM_PERSONS), dtype=np.float32)
    data[bodies.sample, :, :, :, bodies.person] = pos.transpose(0, 3, 1, 2)
    data *= (np.arange(frames)[None, :] < lengths[:, None])[:, None, :, None, None]
    return data


def _apply_dropouts(config: SynthConfig, pos: np.ndarray, lengths: np.ndarray,
                    rng: np.random.Generator) -> None:
    """Simulate Kinect tracking failures in place on ``pos (B, T, V, 3)``: per body with
    probability ``dropout_prob``, one event of a random kind lasting a few frames."""
    hit = np.flatnonzero(rng.random(pos.shape[0]) < config.dropout_prob)
    kinds = rng.integers(0, len(DROPOUT_KINDS), size=hit.size)
    spans = rng.integers(config.dropout_frames[0], config.dropout_frames[1] + 1, size=hit.size)
    starts = 1 + np.floor(rng.random(hit.size) * (lengths[hit] - spans)).astype(np.int64)
    joints = rng.choice(DROPOUT_JOINTS, size=hit.size)
    direction = rng.standard_normal((hit.size, 3))
    jumps = direction / np.linalg.norm(direction, axis=-1, keepdims=True)
    jumps *= rng.uniform(*DROPOUT_JUMP_RANGE, size=(hit.size, 1))
    for body, kind, span, start, joint, jump in zip(hit, kinds, spans, starts, joints, jumps):
        window = slice(start, start + span)
        name = DROPOUT_KINDS[kind]
        if name == "joint_freeze":
            pos[body, window, joint] = pos[body, start - 1, joint]
        elif name == "joint_jump":
            pos[body, window, joint] += jump
        elif name == "body_freeze":
            pos[body, window] = pos[body, start - 1]
        else:
            pos[body, window] = 0.0


# ---------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------


def _performers(rng: np.random.Generator, ids: np.ndarray, size: int):
    """``size`` performers drawn from ``ids`` and, for each, a different partner."""
    first = rng.integers(0, ids.size, size=size)
    second = (first + rng.integers(1, ids.size, size=size)) % ids.size
    return ids[first], ids[second]


def generate_synthetic(config: SynthConfig, out_dir: str | os.PathLike) -> SkeletonData:
    """Generate the benchmark and write it to ``out_dir`` in the project's format.

    Splits: ``train`` (long-tailed, drawn from the balanced pool), ``test`` (balanced),
    ``val`` (balanced, from the pool's remainder; only when ``val_per_class > 0``) and ``pool``
    (the whole balanced training pool; only when ``keep_pool``).  Only the samples of these
    splits are synthesised and stored.  Sample names are
    ``synth_c{class:03d}_s{performer:03d}_r{index within the class:04d}``.

    Returns:
        The written dataset, loaded.
    """
    num_classes = config.num_classes
    specs = make_class_specs(config)
    pool_labels = np.repeat(np.arange(num_classes), config.pool_per_class)
    test_labels = np.repeat(np.arange(num_classes), config.test_per_class)
    labels = np.concatenate([pool_labels, test_labels])
    pool = np.arange(pool_labels.size)
    test = np.arange(pool_labels.size, labels.size)

    # Splits first, so that only the stored samples are synthesised.
    split_seed = int(_rng(config.seed, _STREAM_SPLITS).integers(2**31))
    train = make_longtail_split(pool_labels, num_classes, config.n_max, config.imbalance_factor,
                                config.profile, seed=split_seed)
    remainder = np.setdiff1d(pool, train)
    val = remainder[sample_per_class(pool_labels[remainder], [config.val_per_class] * num_classes,
                                     seed=split_seed, strict=True)]
    splits = {"train": train, "test": test}
    if config.val_per_class:
        splits["val"] = val
    if config.keep_pool:
        splits["pool"] = pool
    keep = np.unique(np.concatenate(list(splits.values())))

    # Performers: under the cross-subject protocol even ids train, odd ids test.
    rng = _rng(config.seed, _STREAM_SAMPLES)
    ids = np.arange(config.num_subjects)
    train_ids, test_ids = (ids[ids % 2 == 0], ids[ids % 2 == 1]) if config.cross_subject else (
        ids, ids)
    subjects = np.empty(labels.size, dtype=np.int64)
    partners = np.empty(labels.size, dtype=np.int64)
    subjects[pool], partners[pool] = _performers(rng, train_ids, pool.size)
    subjects[test], partners[test] = _performers(rng, test_ids, test.size)
    data, lengths = synthesize_sequences(config, labels[keep], subjects[keep], rng, partners[keep])

    rank = np.zeros(labels.size, dtype=np.int64)  # index of each sample within its class
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        rank[members] = np.arange(members.size)
    names = [f"synth_c{c:03d}_s{s:03d}_r{r:04d}" for c, s, r in zip(labels, subjects, rank)]
    kept_names = [names[i] for i in keep]
    metadata = {
        "source": "shapmix.data.synthetic",
        "units": "m",
        "coordinates": "Kinect v2 camera space: x right, y up, z depth",
        "generator": config.model_dump(mode="json"),
        "generator_version": GENERATOR_VERSION,
        "salient_parts": {spec.name: list(spec.salient_parts) for spec in specs},
        "two_person_classes": [spec.name for spec in specs if spec.two_person],
        "classes": [asdict(spec) for spec in specs],
        "train_counts": np.bincount(pool_labels[train], minlength=num_classes).tolist(),
        "subjects": dict(zip(kept_names, subjects[keep].tolist())),
        "partners": {names[i]: int(partners[i]) for i in keep if specs[labels[i]].two_person},
        "subject_scale": make_subjects(config).scale.round(4).tolist(),
    }
    return write_dataset(
        out_dir, data, labels[keep], lengths, kept_names, SYNTH_LAYOUT,
        [spec.name for spec in specs],
        splits={split: [names[i] for i in members] for split, members in splits.items()},
        metadata=metadata,
    )
