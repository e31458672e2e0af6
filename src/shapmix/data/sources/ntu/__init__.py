"""NTU RGB+D 60/120: raw ``.skeleton`` files to the community's arrays, exactly and fast.

Most skeleton papers train on the ``NTU60_CS.npz`` / ``NTU60_CV.npz`` / ``NTU120_CSub.npz`` /
``NTU120_CSet.npz`` files built by CTR-GCN's three preprocessing scripts
(``get_raw_skes_data.py``, ``get_raw_denoised_data.py``, ``seq_transformation.py``).  This
package reproduces those scripts bit for bit (float32, maximum absolute difference 0), three
stages per file, one module each:

1. :mod:`.parse`: :func:`parse_skeleton` / :func:`read_skeleton`, the file's bodies (a
   vectorised parser, :mod:`.decimals`, with a strict line-by-line fallback);
2. :mod:`.denoise`: :func:`denoise`, noisy bodies dropped and at most two actors placed
   (``fix_upstream_bugs`` corrects two documented upstream bugs there);
3. :mod:`.align`: :func:`align`, translated and padded to ``(300, 150)`` rows.

:func:`process_skeleton` (:mod:`.pipeline`) runs all three; :mod:`.names` parses sample names
and gives the benchmarks' splits; :mod:`.pyskl_export` reproduces pyskl's NTU tool instead;
:func:`convert_ntu` (:mod:`.convert`, with :mod:`.staging` and :mod:`.outputs`) converts a
directory in parallel, resumably and with bounded memory; :mod:`.constants` holds the format's
and the method's numbers.  :func:`~.writer.write_skeleton` (:mod:`.writer`) writes valid
``.skeleton`` files, the way test and benchmark corpora are made.

Deliberate differences from upstream on malformed input (upstream crashes or silently accepts):
non-blank content after the declared frames, a joint count other than 25, a joint line without
12 fields, NaN/Inf or values beyond float32, a body id twice in one frame, no body longer than
:data:`MIN_BODY_FRAMES` frames in a multi-body file and sequences longer than :data:`MAX_FRAMES`
are all :class:`~shapmix.errors.NTUFormatError` (re-exported here).
"""

from .align import align, row_to_cthw
from .constants import (
    DATASET_BENCHMARKS,
    DATASET_CLASSES,
    MAX_FRAMES,
    MIN_BODY_FRAMES,
    NOISE_FRAME_FRACTION,
    NOISE_SPREAD_RATIO,
    NTU60_XSUB_TRAIN_SUBJECTS,
    NTU60_XVIEW_TRAIN_CAMERAS,
    NTU120_XSUB_TRAIN_SUBJECTS,
    NTU_ACTION_NAMES,
    NUM_JOINTS,
)
from .convert import FORMATS, ConversionReport, convert_ntu
from .denoise import DenoisedSkeleton, denoise
from ....errors import NTUFormatError
from .names import SampleInfo, is_train_sample, parse_sample_name, split_names
from .parse import RawBody, RawSkeleton, parse_skeleton, read_skeleton
from .pipeline import ProcessedSample, process_skeleton
from .pyskl_export import pyskl_annotation, pyskl_keypoint, pyskl_splits

__all__ = [
    "DATASET_BENCHMARKS",
    "DATASET_CLASSES",
    "FORMATS",
    "MAX_FRAMES",
    "MIN_BODY_FRAMES",
    "NOISE_FRAME_FRACTION",
    "NOISE_SPREAD_RATIO",
    "NTU60_XSUB_TRAIN_SUBJECTS",
    "NTU60_XVIEW_TRAIN_CAMERAS",
    "NTU120_XSUB_TRAIN_SUBJECTS",
    "NTU_ACTION_NAMES",
    "NUM_JOINTS",
    "ConversionReport",
    "DenoisedSkeleton",
    "NTUFormatError",
    "ProcessedSample",
    "RawBody",
    "RawSkeleton",
    "SampleInfo",
    "align",
    "convert_ntu",
    "denoise",
    "is_train_sample",
    "parse_sample_name",
    "parse_skeleton",
    "process_skeleton",
    "pyskl_annotation",
    "pyskl_keypoint",
    "pyskl_splits",
    "read_skeleton",
    "row_to_cthw",
    "split_names",
]
