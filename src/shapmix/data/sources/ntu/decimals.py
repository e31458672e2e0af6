"""The fast decimal parser: many decimal tokens of a byte buffer to float64 at once, exactly.

:func:`parse_decimals` reads each token as two 64-bit words and combines its digits eight at a
time (SWAR) into an exact integer mantissa, then divides once by an exact power of ten, which
rounds correctly exactly as ``strtod`` does; :func:`decimal_value` is the one-token fallback the
strict parser uses.  The values are float64; the NTU reader casts them to float32 like
upstream's ``np.array(strings, dtype=np.float32)``.
"""

from __future__ import annotations

import re

import numpy as np

DOT = ord(".")
MINUS = ord("-")
ZERO = ord("0")
DECIMAL_DIGITS = 10
MAX_EXACT_MANTISSA_DIGITS = 15
"""Tokens of up to 15 digits (and a dot) have an exact double mantissa (< 10**15 < 2**53);
longer ones are left to the strict parser."""
DECIMAL_PATTERN = re.compile(rb"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


def decimal_value(token: bytes) -> float | None:
    """The value of one decimal token, ``None`` when it is not a decimal number."""
    if DECIMAL_PATTERN.match(token) is None:
        return None
    return float(token)


_WORD_BYTES = 8
_ROW_BYTES = 2 * _WORD_BYTES  # a token right-aligned in two 64-bit words: 16 > 15 characters
_POW10 = 10.0 ** np.arange(_ROW_BYTES)  # exact doubles (10**k is exact up to k = 22)


def _repeat_byte(value: int) -> np.uint64:
    return np.uint64(int.from_bytes(bytes([value]) * _WORD_BYTES, "little"))


_LOW_BYTE_MASKS = np.array([(1 << (8 * n)) - 1 for n in range(_WORD_BYTES + 1)], dtype=np.uint64)
"""``[n]``: the mask of a little-endian word's first ``n`` characters (low-order bytes)."""
_ZEROS = _repeat_byte(ZERO)
_ONES = _repeat_byte(1)
_HIGH_BITS = _repeat_byte(0x80)
_DOTS = _repeat_byte(DOT)
_ABOVE_NINE = _repeat_byte(0x80 - (ZERO + DECIMAL_DIGITS))  # a byte > '9' gets its high bit
_BYTE_INDEX = np.uint64(0x0001020304050607)  # times 256**k, the top byte is k
_DOT_TO_ZERO_SHIFT = np.uint64(6)  # the flag 0x80 of a dot byte, shifted: 2 = '0' - '.'
_FLAG_SHIFT = np.uint64(7)
_TOP_BYTE_SHIFT = np.uint64(56)
_EIGHT = np.uint64(8)
_SIXTEEN = np.uint64(16)
_THIRTY_TWO = np.uint64(32)
_TEN = np.uint64(10)
_PAIR_MASK = np.uint64(0x000000FF000000FF)
_PAIR_MULTIPLIER = np.uint64(100 + (1000000 << 32))
_QUAD_MULTIPLIER = np.uint64(1 + (10000 << 32))
_EIGHT_DIGITS = np.uint64(10**8)


def _lowest_dot(words: np.ndarray) -> np.ndarray:
    """Per word, the high bit (0x80 << 8k) of its first '.' byte k, or 0 (no dot).

    The classic "has zero byte" test on ``word ^ '........'``: its lowest flagged byte is
    exact (borrows only ever flag bytes above a zero byte).
    """
    x = words ^ _DOTS
    flags = (x - _ONES) & ~x & _HIGH_BITS
    return flags & (~flags + np.uint64(1))


def _eight_digits(words: np.ndarray) -> np.ndarray:
    """The integer value of 8 ASCII digits per little-endian word (first character highest)."""
    value = words - _ZEROS
    value = value * _TEN + (value >> _EIGHT)  # 2-digit lanes
    return (
        (value & _PAIR_MASK) * _PAIR_MULTIPLIER
        + ((value >> _SIXTEEN) & _PAIR_MASK) * _QUAD_MULTIPLIER
    ) >> _THIRTY_TWO


def parse_decimals(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray | None:
    """Decode the decimal tokens ``buf[starts[i]:ends[i]]`` to float64, vectorised and exact.

    Each token is read right-aligned as two little-endian 64-bit words (two unaligned gathers),
    the bytes before it (and its minus sign) become ``'0'``, its dot becomes ``'0'`` too, and
    the digits are combined eight at a time with the classic SWAR multiply-shift steps into an
    exact integer ``A`` (the dot counted as a zero digit).  With ``f`` fraction digits,
    ``A = high * 10**(f+1) + low`` and the mantissa is ``M = A - 9 * high * 10**f``; the value
    is ``M / 10**f``.  ``M < 10**15`` and ``10**f`` are exact doubles, so the one division is
    correctly rounded, exactly like ``strtod``.  Tokens that are not plain ``-ddd.ddd``
    (exponents, plus signs) are rare and decoded one by one by Python's ``float``.

    Returns ``None`` when a token is not a decimal number or is longer than
    :data:`MAX_EXACT_MANTISSA_DIGITS` (the caller then uses the strict parser, which reports
    the problem precisely).
    """
    count = starts.size
    if count == 0:
        return np.empty(0)
    negative = buf[starts] == MINUS
    body = ends - starts - negative  # digits and dot
    if body.min() < 1 or body.max() > MAX_EXACT_MANTISSA_DIGITS:
        return None
    if ends.min() < _ROW_BYTES:  # too close to the file start for two words: pad a copy
        buf = np.concatenate([np.full(_ROW_BYTES, ZERO, dtype=np.uint8), buf])
        starts, ends = starts + _ROW_BYTES, ends + _ROW_BYTES
    words = np.ndarray((buf.size - _WORD_BYTES + 1,), dtype="<u8", buffer=buf, strides=(1,))
    left = words[ends - _ROW_BYTES].astype(np.uint64)  # row characters 0-7
    right = words[ends - _WORD_BYTES].astype(np.uint64)  # row characters 8-15
    pad = _ROW_BYTES - body  # leading row characters that are not digits or the dot
    left_mask = _LOW_BYTE_MASKS[np.minimum(pad, _WORD_BYTES)]
    right_mask = _LOW_BYTE_MASKS[np.maximum(pad - _WORD_BYTES, 0)]
    left = (left & ~left_mask) | (_ZEROS & left_mask)
    right = (right & ~right_mask) | (_ZEROS & right_mask)
    left_dot = _lowest_dot(left)
    right_dot = _lowest_dot(right)
    left += left_dot >> _DOT_TO_ZERO_SHIFT
    right += right_dot >> _DOT_TO_ZERO_SHIFT
    not_digit = ((left + _ABOVE_NINE) | (left - _ZEROS) | (right + _ABOVE_NINE)
                 | (right - _ZEROS)) & _HIGH_BITS
    irregular = (not_digit != 0) | ((left_dot != 0) & (right_dot != 0))
    has_dot = (left_dot | right_dot) != 0
    if (body <= has_dot).any():
        return None  # ".", "-.": no digit
    integer = (_eight_digits(left) * _EIGHT_DIGITS + _eight_digits(right)).astype(np.float64)
    dot_column = np.where(
        left_dot != 0,
        ((left_dot >> _FLAG_SHIFT) * _BYTE_INDEX) >> _TOP_BYTE_SHIFT,
        _EIGHT + (((right_dot >> _FLAG_SHIFT) * _BYTE_INDEX) >> _TOP_BYTE_SHIFT),
    )
    dotted = np.flatnonzero(has_dot)
    scale = _POW10[_ROW_BYTES - 1 - dot_column[dotted].astype(np.int64)]
    with_dot = integer[dotted]
    # floor(A / 10**f) = 10 * high exactly: the fraction low / 10**f stays below 1 by more
    # than the quotient's rounding error, as A < 10**15.
    high = np.floor(with_dot / scale) / DECIMAL_DIGITS
    integer[dotted] = (with_dot - (DECIMAL_DIGITS - 1) * high * scale) / scale
    np.negative(integer, out=integer, where=negative)
    for row in np.flatnonzero(irregular).tolist():
        value = decimal_value(buf[starts[row]: ends[row]].tobytes())
        if value is None:
            return None
        integer[row] = value
    return integer
