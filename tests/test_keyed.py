"""The keyed hash, pinned: every static mask, every eval corruption and every run's draws
are recomputed from these functions, so a changed bit would silently change results
that earlier runs recorded. Values pinned here were computed by this code; fmix32 is
also checked against MurmurHash3's published finaliser."""

from __future__ import annotations

import math

import torch

from masklab.ops import keyed

INDEX = torch.tensor([0, 1, 2, 59999])


def murmur_fmix32(h: int) -> int:
    """MurmurHash3_x86_32's fmix32, as in Austin Appleby's smhasher."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


def keys() -> keyed.Keys:
    bases = torch.tensor([keyed.mix(0, 0, 0, s) for s in keyed.STREAMS], dtype=torch.int32)
    return keyed.Keys(keyed.batch_keys(INDEX, bases))


def test_fmix32_is_murmur3s_finaliser_on_the_host_and_on_tensors():
    values = [0, 1, 2, 0xDEADBEEF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 12345678]
    assert [keyed._fmix32_int(v) for v in values] == [murmur_fmix32(v) for v in values]
    assert murmur_fmix32(1) == 0x514E28B7
    signed = torch.tensor([keyed.to_int32(v) for v in values], dtype=torch.int32)
    assert keyed.fmix32(signed).tolist() == [keyed.to_int32(murmur_fmix32(v)) for v in values]


def test_to_int32_wraps_like_int32():
    assert [keyed.to_int32(v) for v in (0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, -1)] == [
        0,
        1,
        2**31 - 1,
        -(2**31),
        -1,
        0,
        -1,
    ]


def test_mix_and_batch_keys_are_pinned():
    assert [keyed.mix(*p) for p in [(0,), (0, 0, 0, 3), (7, 1, 2, 3), (2**31 - 1, 5, -3, 1)]] == [
        -836000503,
        805846694,
        -67513260,
        -196294585,
    ]
    assert keyed.mix(1, 2) != keyed.mix(2, 1)  # order matters
    bases = torch.tensor([keyed.mix(0, 0, 0, 3), keyed.mix(1, 0, 0, 3)], dtype=torch.int32)
    assert keyed.batch_keys(INDEX, bases).tolist() == [
        [142268479, -1633808954, -567992955, -560352707],
        [1513423248, 1296332820, 208071510, 1419779498],
    ]
    assert keyed.batch_keys(INDEX, bases).dtype == torch.int32


def test_streams_sub_streams_and_uniforms_are_pinned():
    k = keys()
    assert k.stream(3).tolist() == [142268479, -1633808954, -567992955, -560352707]
    assert k.stream(3, 2).tolist() == [-1394286671, 1593574309, 1039109277, -111085094]
    assert k.stream(3, 1).tolist() != k.stream(3, 2).tolist()
    assert k.uniform(1).tolist() == [0.5557927489280701, 0.18004709482192993, 0.003053724765777588, 0.2509769797325134]
    assert k.uniforms(5, 2).tolist() == [
        [0.9962106347084045, 0.6211453676223755, 0.8877336978912354, 0.6560244560241699],
        [0.8592727780342102, 0.6574660539627075, 0.1305890679359436, 0.7915129661560059],
    ]


def test_unit_bits_are_pinned_and_distinct():
    k = keys()
    assert keyed.unit_bits(k.stream(3), 4).tolist() == [
        [482292764, 1446393704, 292678108, -1731837128],
        [1190802257, -1936878392, -1378791126, -1898681000],
        [2014027736, 2123993619, -76095108, -479516749],
        [-1936757581, -804004403, -377764185, 42460755],
    ]
    bits = keyed.unit_bits(k.stream(3), 4096)
    assert all(len(set(row.tolist())) == 4096 for row in bits)  # a bijection of the position
    assert torch.equal(keyed.unit_bits(k.stream(3), 4096)[:, :4], keyed.unit_bits(k.stream(3), 4))  # prefix-stable


def test_uniform_takes_the_top_24_bits_exactly():
    bits = torch.tensor([0, 255, 256, -1, -(2**31), 2**31 - 1], dtype=torch.int32)
    assert keyed.uniform(bits).tolist() == [
        0.0,
        0.0,
        1 / 2**24,
        (2**24 - 1) / 2**24,
        0.5,
        (2**23 - 1) / 2**24,
    ]


def test_sortable_orders_as_uniform_does():
    bits = keyed.unit_bits(keys().stream(3), 2000)
    u = keyed.uniform(bits).double() + (bits & 0xFF).double() / 2**32  # the full 32-bit unsigned order
    order = keyed.sortable(bits).argsort(dim=1)
    assert bool((u.gather(1, order).diff(dim=1) > 0).all())
    assert keyed.sortable(torch.tensor([0, -1], dtype=torch.int32)).tolist() == [-(2**31), 2**31 - 1]


def test_normal_is_pinned_standard_and_bounded():
    k = keys()
    expected = torch.tensor(
        [
            [0.22621485590934753, -0.004702234175056219, 0.6504545211791992],
            [0.7676079869270325, -1.1749427318572998, 0.7836710810661316],
            [-0.42061761021614075, -0.47295045852661133, -0.850597620010376],
            [0.7057242393493652, -0.2897140681743622, 0.7320556640625],
        ]
    )
    assert torch.allclose(keyed.normal(k.stream(4), 3), expected, atol=1e-6, rtol=0)
    assert torch.equal(keyed.normal(k.stream(4), 3), keyed.normal(k.stream(4), 4)[:, :3])
    z = keyed.normal(keyed.batch_keys(torch.arange(200), torch.tensor(7, dtype=torch.int32)), 1000).double()
    n = z.numel()
    assert abs(float(z.mean())) < 4 / math.sqrt(n) and abs(float(z.std()) - 1) < 4 * math.sqrt(0.5 / n)
    assert float(z.abs().max()) <= math.sqrt(-2 * math.log(0.5 / 65536)) + 1e-6  # 4.85: the radius is bounded
    assert abs(float((z > 1.96).double().mean()) - 0.025) < 4 * math.sqrt(0.025 * 0.975 / n)


def test_normal_under_the_compiler_gives_the_eager_draws(monkeypatch):
    """torch.compile takes the concatenating branch (out= views would break it): same numbers."""
    k = keys().stream(4)
    eager = {n: keyed.normal(k, n) for n in (1, 3, 4, 9)}
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    for n, values in eager.items():
        assert torch.equal(keyed.normal(k, n), values), n
