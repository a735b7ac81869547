"""The precision ``fit`` picks: bf16-mixed only where the hardware computes bfloat16 natively."""

from __future__ import annotations

import pytest

from nasty_lightning.precision import cpu_has_native_bf16, fastest_precision

X86 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw{}\n"


@pytest.mark.parametrize(
    ("cpuinfo", "native"),
    [
        (X86.format(" avx512_bf16"), True),
        (X86.format(" amx_bf16 amx_tile"), True),
        (X86.format(""), False),
        ("processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n", True),
        ("processor\t: 0\nFeatures\t: fp asimd\n", False),
        ("model name\t: has bf16 in its name\nflags\t: sse2\n", False),
    ],
)
def test_native_bf16_is_read_from_the_cpu_flags(cpuinfo, native, tmp_path):
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    assert cpu_has_native_bf16(tmp_path / "cpuinfo") is native
    assert fastest_precision("cpu", tmp_path / "cpuinfo") == ("bf16-mixed" if native else "32-true")


def test_no_cpuinfo_means_float32(tmp_path):
    assert not cpu_has_native_bf16(tmp_path / "missing")
    (tmp_path / "cpuinfo").write_text(X86.format(" avx512_bf16"))
    assert fastest_precision("mps", tmp_path / "cpuinfo") == "32-true"
