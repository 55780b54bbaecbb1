"""The one keyed random function behind every op.

    u = H(seed, op_index, view, stream, sample_index, position)  ->  uniform in [0, 1)

H is built from MurmurHash3's 32-bit finaliser (fmix32) on int32 tensors, so it runs as
ordinary tensor ops on the batch's device: no Python loop over samples, no host round
trip, no global RNG, and the same bits on CPU and CUDA (int32 multiplication wraps on
both). `sample_index` is the sample's index in the dataset, never its place in the
batch, so draws do not depend on batch size, shuffle order or device.

The host computes one int per op, view and stream, `base = mix(seed, op_index, view,
stream)`; the device turns each into one key per sample (`batch_keys`) and one 32-bit
word per (sample, position) (`unit_bits`).
"""

from __future__ import annotations

import math

import torch

_M1 = -2048144789  # 0x85EBCA6B as int32
_M2 = -1028477387  # 0xC2B2AE35 as int32
GOLDEN = -1640531535  # 0x9E3779B1 as int32
_MASK32 = 0xFFFFFFFF
_SUB_SALT = 0x1B873593
_TWO_PI = 2.0 * math.pi

# Streams: independent families of draws of one op for one sample.
APPLY, VALUE, UNITS, FILL, EXTRA = 1, 2, 3, 4, 5
STREAMS = (APPLY, VALUE, UNITS, FILL, EXTRA)


def fmix32(x: torch.Tensor) -> torch.Tensor:
    """MurmurHash3 fmix32 on int32 tensors (logical shifts written as shift-and-mask)."""
    x = x ^ ((x >> 16) & 0xFFFF)
    x = x * _M1
    x = x ^ ((x >> 13) & 0x7FFFF)
    x = x * _M2
    return x ^ ((x >> 16) & 0xFFFF)


def _fmix32_int(x: int) -> int:
    x &= _MASK32
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & _MASK32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & _MASK32
    return x ^ (x >> 16)


def to_int32(x: int) -> int:
    x &= _MASK32
    return x - (1 << 32) if x >= 1 << 31 else x


def mix(*parts: int) -> int:
    """Host-side hash of a few integers (seed, op index, view, stream) to one int32."""
    h = 0x6A09E667
    for part in parts:
        h = _fmix32_int(h ^ _fmix32_int((int(part) * 0x9E3779B1 + 0x7F4A7C15) & _MASK32))
    return to_int32(h)


def batch_keys(index: torch.Tensor, bases: torch.Tensor) -> torch.Tensor:
    """Keys for every sample of a batch under each base. bases (...) int32 -> (..., B)."""
    x = index.to(torch.int32) * GOLDEN  # (B,)
    return fmix32(x ^ bases[..., None])


class Keys:
    """One op's per-sample keys for one batch: a row (B,) per stream."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table  # (len(STREAMS), B) int32

    def stream(self, which: int, sub: int = 0) -> torch.Tensor:
        """The keys of a stream, or of one of its numbered sub-streams. (B,)"""
        keys = self.table[which - 1]
        return keys if sub == 0 else fmix32(keys ^ to_int32(_SUB_SALT + sub * GOLDEN))

    def uniform(self, which: int) -> torch.Tensor:
        """One uniform per sample from a stream. (B,)"""
        return uniform(fmix32(self.table[which - 1]))

    def uniforms(self, which: int, count: int) -> torch.Tensor:
        """`count` independent uniforms per sample from one stream. (count, B)"""
        salts = torch.arange(1, count + 1, dtype=torch.int32, device=self.table.device) * GOLDEN + _SUB_SALT
        return uniform(fmix32(self.table[which - 1][None, :] ^ salts[:, None]))


def unit_bits(keys: torch.Tensor, n: int) -> torch.Tensor:
    """32 random bits per sample and position 0..n-1. (B, n) int32.

    Two multiply-xorshift rounds over (sample key XOR position salt): the sample keys
    are already fmix32 outputs, so two rounds suffice, and every step is a bijection,
    so the n words of one sample are all different (ranking them has no ties)."""
    positions = torch.arange(n, dtype=torch.int32, device=keys.device) * GOLDEN
    h = (keys[:, None] ^ positions) * _M1
    h ^= (h >> 16) & 0xFFFF
    h *= _M2
    h ^= (h >> 13) & 0x7FFFF
    return h


def uniform(bits: torch.Tensor) -> torch.Tensor:
    """Top 24 bits as a float32 in [0, 1), exact on every device."""
    return ((bits >> 8) & 0xFFFFFF).to(torch.float32) * (1.0 / 16777216.0)


def sortable(bits: torch.Tensor) -> torch.Tensor:
    """Bits whose signed order is the unsigned order, i.e. the order of `uniform`."""
    return bits ^ -2147483648


def normal(keys: torch.Tensor, n: int) -> torch.Tensor:
    """n standard normal draws per sample by Box-Muller, two per 32-bit word: the high
    16 bits give the radius, the low 16 bits the angle; position p < ceil(n/2) takes
    the cosine of word p, the rest the sine of word p - ceil(n/2). (B, n) float32.

    The radius uses (k + 0.5) / 65536 for a 16-bit k, so |z| <= 4.85 always; the tails
    beyond are cut (probability 1.2e-6)."""
    half = (n + 1) // 2
    bits = unit_bits(keys, half)
    # (bits >> 16) is the signed high half; + 32768.5 makes it k + 0.5 for k in 0..65535
    radius = (bits >> 16).to(torch.float32).add_(32768.5).mul_(1.0 / 65536.0).log_().mul_(-2.0).sqrt_()
    angle = (bits & 0xFFFF).to(torch.float32).mul_(_TWO_PI / 65536.0)
    if torch.compiler.is_compiling():  # the compiler fuses this; out= views would break it
        return torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)[:, :n]
    out = torch.empty(keys.shape[0], 2 * half, device=keys.device)  # eager: no concatenation copy
    torch.cos(angle, out=out[:, :half]).mul_(radius)
    torch.sin(angle, out=out[:, half:]).mul_(radius)
    return out[:, :n]
