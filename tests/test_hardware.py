"""Precision by hardware: `auto` follows the (injected) capability check, explicit settings always win."""

import pytest

from modeling_speechtext import hardware as hw

NO_BF16 = hw.HardwareInfo(cpu_model="Intel Xeon 2.8GHz", cpu_flags=("avx512f",), cpu_native_bf16=False)
BF16 = hw.HardwareInfo(cpu_model="AMD EPYC", cpu_flags=("avx512f", "avx512_bf16"), cpu_native_bf16=True)
GPU = hw.HardwareInfo(cpu_model="Intel Xeon", cpu_native_bf16=False, gpu="NVIDIA H100", gpu_bf16=True)
OLD_GPU = hw.HardwareInfo(cpu_model="AMD EPYC", cpu_native_bf16=True, gpu="Tesla T4", gpu_bf16=False)


@pytest.mark.parametrize("value", ["auto", None, "AUTO"])
def test_auto_follows_the_capability_check(value):
    assert hw.resolve_bf16(value, hardware=NO_BF16).bf16 is False
    assert hw.resolve_bf16(value, hardware=BF16).bf16 is True
    decision = hw.resolve_bf16(value, hardware=NO_BF16)
    assert decision.precision == "float32" and "no native bf16" in decision.reason and "Intel Xeon" in decision.reason


def test_auto_on_gpu_follows_the_gpu_unless_use_cpu():
    assert hw.resolve_bf16("auto", hardware=GPU).bf16 is True
    assert hw.resolve_bf16("auto", hardware=GPU).device == "cuda"
    assert hw.resolve_bf16("auto", hardware=OLD_GPU).bf16 is False  # the CPU's bf16 does not matter on the GPU
    assert hw.resolve_bf16("auto", use_cpu=True, hardware=GPU).bf16 is False  # this CPU has none
    assert hw.resolve_bf16("auto", use_cpu=True, hardware=OLD_GPU).bf16 is True


@pytest.mark.parametrize("machine", [NO_BF16, BF16, GPU, OLD_GPU])
@pytest.mark.parametrize("value,expected", [(True, True), (False, False), ("true", True), ("false", False)])
def test_explicit_setting_is_never_overridden(machine, value, expected):
    decision = hw.resolve_bf16(value, hardware=machine)
    assert decision.bf16 is expected and "explicitly" in decision.reason


def test_bad_value_is_a_clear_error():
    with pytest.raises(ValueError, match="bf16='fast'"):
        hw.resolve_bf16("fast", hardware=BF16)


def test_cpu_flags_decide_native_bf16(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    model, flags = hw._cpuinfo(str(info))
    assert model == "Some CPU" and "avx512_bf16" in flags
    monkeypatch.setattr(hw, "_cpuinfo", lambda: ("Old CPU", {"avx2", "avx512f", "avx512bw"}))
    monkeypatch.delenv(hw.ENV_OVERRIDE, raising=False)
    hw.detect_hardware.cache_clear()
    try:
        found = hw.detect_hardware()
        assert found.cpu_model == "Old CPU" and found.cpu_native_bf16 is False
        assert found.cpu_flags == ("avx2", "avx512f", "avx512bw")
        monkeypatch.setenv(hw.ENV_OVERRIDE, "1")
        hw.detect_hardware.cache_clear()
        assert hw.detect_hardware().cpu_native_bf16 is True
        monkeypatch.setenv(hw.ENV_OVERRIDE, "maybe")
        hw.detect_hardware.cache_clear()
        with pytest.raises(ValueError, match=hw.ENV_OVERRIDE):
            hw.detect_hardware()
    finally:
        hw.detect_hardware.cache_clear()


@pytest.mark.parametrize("machine,expected", [(NO_BF16, False), (BF16, True)])
def test_recipe_configs_resolve_auto_before_transformers_sees_it(monkeypatch, tmp_path, machine, expected):
    from recipes.train_speech_decoder import DecoderTrainingArguments
    from recipes.train_text_to_token import _parser

    monkeypatch.setattr(hw, "detect_hardware", lambda: machine)
    args = DecoderTrainingArguments(output_dir=str(tmp_path), use_cpu=True)  # the default is auto
    assert args.bf16 is expected
    assert DecoderTrainingArguments(output_dir=str(tmp_path), use_cpu=True, bf16=not expected).bf16 is (not expected)
    _, sft = _parser().parse_dict({"output_dir": str(tmp_path), "use_cpu": True, "bf16": "auto"})
    assert sft.bf16 is expected
    _, sft = _parser().parse_dict({"output_dir": str(tmp_path), "use_cpu": True})  # TRL's own default would be True
    assert sft.bf16 is expected
