"""The one keyed random function behind every op.

    u = H(seed, op_index, view, sample_index, stream, position)  ->  uniform in [0, 1)

H is MurmurHash3's 32-bit finaliser (fmix32) applied to int32 tensors, so it runs as
ordinary tensor ops on the batch's device: no Python loop over samples, no host round
trip, no global RNG, and the same bits on CPU and CUDA (int32 multiplication wraps on
both). `sample_index` is the sample's index in the dataset, never its place in the
batch, so draws do not depend on batch size, shuffle order or device.

The host computes one int per op and batch, `base = mix(seed, op_index, view)`; the
device turns it into one key per sample, one key per (sample, stream) and one 32-bit
word per (sample, stream, position).
"""

from __future__ import annotations

import math

import torch

_M1 = -2048144789  # 0x85EBCA6B as int32
_M2 = -1028477387  # 0xC2B2AE35 as int32
GOLDEN = -1640531535  # 0x9E3779B1 as int32
_MASK32 = 0xFFFFFFFF
_TWO_PI = 2.0 * math.pi

# Streams: independent draws of one op for one sample.
APPLY, VALUE, UNITS, FILL, EXTRA = 1, 2, 3, 4, 5


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
    """Host-side hash of a few integers (seed, op index, view, ...) to one int32."""
    h = 0x6A09E667
    for part in parts:
        h = _fmix32_int(h ^ _fmix32_int((int(part) * 0x9E3779B1 + 0x7F4A7C15) & _MASK32))
    return to_int32(h)


_STREAM_SALT = {s: mix(0x5EED, s) for s in (APPLY, VALUE, UNITS, FILL, EXTRA)}


def sample_keys(index: torch.Tensor, base: torch.Tensor | int) -> torch.Tensor:
    """One int32 key per sample from its dataset index and the op's base key. (B,)"""
    x = index.to(torch.int32) * GOLDEN
    return fmix32(fmix32(x ^ base) + 0x3C6EF372)


def stream(keys: torch.Tensor, which: int, sub: int = 0) -> torch.Tensor:
    """Per-sample keys of one stream (and sub-stream) of draws. (B,)"""
    return fmix32(keys ^ to_int32(_STREAM_SALT[which] + sub * GOLDEN))


def unit_bits(keys: torch.Tensor, n: int) -> torch.Tensor:
    """32 random bits per sample and position 0..n-1. (B, n) int32.

    fmix32 is a bijection and the positions' salts are distinct, so the n words of one
    sample are all different: ranking them has no ties."""
    positions = torch.arange(n, dtype=torch.int32, device=keys.device) * GOLDEN
    return fmix32(keys[:, None] ^ positions)


def uniform(bits: torch.Tensor) -> torch.Tensor:
    """Top 24 bits as a float32 in [0, 1), exact on every device."""
    return ((bits >> 8) & 0xFFFFFF).to(torch.float32) * (1.0 / 16777216.0)


def sortable(bits: torch.Tensor) -> torch.Tensor:
    """Bits whose signed order is the unsigned order, i.e. the order of `uniform`."""
    return bits ^ -2147483648


def normal(bits: torch.Tensor) -> torch.Tensor:
    """Standard normal draws by Box-Muller on two 16-bit halves of each word.

    The radius uses (k + 0.5) / 65536, so |z| <= 4.85 always; the tails beyond are cut
    (probability 1.2e-6)."""
    u1 = (((bits >> 16) & 0xFFFF).to(torch.float32) + 0.5) * (1.0 / 65536.0)
    u2 = (bits & 0xFFFF).to(torch.float32) * (_TWO_PI / 65536.0)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(u2)


def sample_uniform(keys: torch.Tensor, which: int, sub: int = 0) -> torch.Tensor:
    """One uniform per sample from a stream. (B,)"""
    return uniform(fmix32(stream(keys, which, sub)))
