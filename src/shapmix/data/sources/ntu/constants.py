"""NTU RGB+D constants: the ``.skeleton`` format, the upstream method's thresholds, the
datasets, their benchmarks and action names.

The thresholds are those of CTR-GCN's preprocessing scripts (``get_raw_denoised_data.py``); the
training performers and cameras are those of its ``seq_transformation.py`` (pyskl's rules, which
differ slightly, are in :mod:`.pyskl_export`).
"""

from __future__ import annotations

NUM_JOINTS = 25
"""Kinect v2 joints per body."""
JOINT_FIELDS = 12
"""Fields of a joint line: x y z, depth x y, colour x y, orientation w x y z, tracking state."""
XYZ_FIELDS = (0, 1, 2)
COLOR_FIELDS = (5, 6)
USED_FIELDS = XYZ_FIELDS + COLOR_FIELDS
"""The joint-line fields the pipeline reads, in the order the fast parser decodes them."""
BODY_INFO_FIELDS = 10
"""Fields of a body info line (only field 0, the body id, is used)."""
LINES_PER_BODY = 2 + NUM_JOINTS
"""Body info line, joint-count line, then one line per joint."""
COORDS = 3
ACTOR_COLUMNS = NUM_JOINTS * COORDS  # 75
NUM_ACTORS = 2
ROW_COLUMNS = NUM_ACTORS * ACTOR_COLUMNS  # 150
ORIGIN_JOINT = 1
"""Spine middle (0-based joint 1): stage 3's origin."""
MAX_FRAMES = 300
"""Rows of a final sample (the longest NTU sequence has 300 frames)."""

MIN_BODY_FRAMES = 11
"""Stage 2, length: a body present in this many frames or fewer is noise."""
NOISE_SPREAD_RATIO = 0.8
"""Stage 2, spread: a frame is noisy when x-range > this ratio times y-range."""
NOISE_FRAME_FRACTION = 0.69754
"""Stage 2, spread: a body with at least this fraction of noisy frames is dropped."""

NTU60_NUM_CLASSES = 60
NTU120_NUM_CLASSES = 120
NTU60_MAX_SETUP = 17
"""NTU RGB+D 60 is setups 1-17; NTU120 adds 18-32."""

NTU60_XSUB_TRAIN_SUBJECTS = (
    1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38,
)
NTU60_XVIEW_TRAIN_CAMERAS = (2, 3)
NTU120_XSUB_TRAIN_SUBJECTS = (
    1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38, 45, 46, 47, 49,
    50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91, 92, 93,
    94, 95, 97, 98, 100, 103,
)
"""The 53 training performers of the NTU120 cross-subject protocol (CTR-GCN's list)."""
XSET_TRAIN_SETUP_PARITY = 0
"""NTU120 cross-setup: even setup ids train, odd ones test."""

DATASET_CLASSES = {"ntu60": NTU60_NUM_CLASSES, "ntu120": NTU120_NUM_CLASSES}
DATASET_BENCHMARKS = {"ntu60": ("xsub", "xview"), "ntu120": ("xsub", "xset")}

NTU_ACTION_NAMES = (
    "drink water", "eat meal/snack", "brushing teeth", "brushing hair", "drop", "pickup",
    "throw", "sitting down", "standing up (from sitting position)", "clapping", "reading",
    "writing", "tear up paper", "wear jacket", "take off jacket", "wear a shoe",
    "take off a shoe", "wear on glasses", "take off glasses", "put on a hat/cap",
    "take off a hat/cap", "cheer up", "hand waving", "kicking something", "reach into pocket",
    "hopping (one foot jumping)", "jump up", "make a phone call/answer phone",
    "playing with phone/tablet", "typing on a keyboard", "pointing to something with finger",
    "taking a selfie", "check time (from watch)", "rub two hands together", "nod head/bow",
    "shake head", "wipe face", "salute", "put the palms together",
    "cross hands in front (say stop)", "sneeze/cough", "staggering", "falling",
    "touch head (headache)", "touch chest (stomachache/heart pain)", "touch back (backache)",
    "touch neck (neckache)", "nausea or vomiting condition",
    "use a fan (with hand or paper)/feeling warm", "punching/slapping other person",
    "kicking other person", "pushing other person", "pat on back of other person",
    "point finger at the other person", "hugging other person",
    "giving something to other person", "touch other person's pocket", "handshaking",
    "walking towards each other", "walking apart from each other",
    "put on headphone", "take off headphone", "shoot at the basket", "bounce ball",
    "tennis bat swing", "juggling table tennis balls", "hush (quite)", "flick hair",
    "thumb up", "thumb down", "make ok sign", "make victory sign", "staple book",
    "counting money", "cutting nails", "cutting paper (using scissors)", "snapping fingers",
    "open bottle", "sniff (smell)", "squat down", "toss a coin", "fold paper",
    "ball up paper", "play magic cube", "apply cream on face", "apply cream on hand back",
    "put on bag", "take off bag", "put something into a bag", "take something out of a bag",
    "open a box", "move heavy objects", "shake fist", "throw up cap/hat",
    "hands up (both hands)", "cross arms", "arm circles", "arm swings", "running on the spot",
    "butt kicks (kick backward)", "cross toe touch", "side kick", "yawn", "stretch oneself",
    "blow nose", "hit other person with something", "wield knife towards other person",
    "knock over other person (hit with body)", "grab other person's stuff",
    "shoot at other person with a gun", "step on foot", "high-five", "cheers and drink",
    "carry something with other person", "take a photo of other person",
    "follow other person", "whisper in other person's ear",
    "exchange things with other person", "support somebody with hand",
    "finger-guessing game (playing rock-paper-scissors)",
)
"""The 120 NTU RGB+D action names; the first 60 are NTU RGB+D 60's."""

SKELETON_SUFFIX = ".skeleton"
