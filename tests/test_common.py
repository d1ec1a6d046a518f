"""common.py: the bf16 choice is read from the device's flags."""
import torch

import common


def test_bf16_choice_reads_cpu_flags_not_a_clock(monkeypatch):
    """dtype auto on CPU follows the CPU's bf16 flags, so a busy machine cannot flip it between phases."""
    import io
    cpu = torch.device("cpu")
    for text, want in (("flags\t: fpu avx512f avx512_bf16 sse\n", True), ("flags\t: fpu amx_bf16\n", True),
                       ("flags\t: fpu avx512f avx2\n", False), ("flags\t: fpu avx512_bf16x\n", False)):
        monkeypatch.setattr(common, "open", lambda *a, t=text, **k: io.StringIO(t), raising=False)
        assert common.bf16_native(cpu) is want

    def missing(*a, **k):
        raise FileNotFoundError("/proc/cpuinfo")
    monkeypatch.setattr(common, "open", missing, raising=False)
    assert common.bf16_native(cpu) is False
