"""What machine a stage ran on, and the one place that decides the training precision from it.

Why a decision and not a preset value: bf16 autocast is a speed-up only where the hardware has bf16 arithmetic.
On a CPU with AVX512-BF16 (or AMX) it trained ~1.5x faster than float32; on an Intel Xeon with AVX512 but without
AVX512-BF16 (2026-12-07, torch 2.11) it was 2.3-3.4x *slower* (oneDNN emulates bf16 there), and the demo took 69
minutes instead of ~30. So every recipe takes `bf16: auto` (the default): bf16 autocast on a GPU that supports it
or on a CPU with native bf16, float32 elsewhere. An explicit `true`/`false` always wins.

`SPEECHTEXT_NATIVE_BF16=0|1` overrides the CPU check (a VM that hides its flags, or to reproduce the float32 path
of a CPU without bf16 on one that has it). Evaluation always runs in float32 (the recipes unwrap the autocast
wrapper that Accelerate leaves on `forward`); this module only decides training.
"""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

logger = logging.getLogger(__name__)

# /proc/cpuinfo flags meaning the CPU computes in bf16 natively (x86: AVX512-BF16 / AMX-BF16; aarch64: BF16).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
# The flags worth recording next to a timing (vector width and bf16/int8 units).
REPORTED_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "bf16")
ENV_OVERRIDE = "SPEECHTEXT_NATIVE_BF16"
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class HardwareInfo:
    """The facts a precision decision and a timing comparison need.

    Args:
        cpu_model: the CPU's model name (`/proc/cpuinfo`, else `platform.processor()`).
        cpu_flags: the subset of `REPORTED_FLAGS` this CPU has.
        cpu_native_bf16: whether the CPU has bf16 arithmetic (flags, torch's cpuinfo, or `SPEECHTEXT_NATIVE_BF16`).
        cpu_native_bf16_source: how `cpu_native_bf16` was decided.
        logical_cpus: `os.cpu_count()`.
        gpu: the CUDA device name, or None.
        gpu_bf16: whether that GPU supports bf16.
        torch_version: torch's version string.
    """

    cpu_model: str
    cpu_flags: tuple[str, ...] = ()
    cpu_native_bf16: bool = False
    cpu_native_bf16_source: str = "flags"
    logical_cpus: int = 1
    gpu: str | None = None
    gpu_bf16: bool = False
    torch_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cpu_flags"] = list(self.cpu_flags)
        return d


@dataclass(frozen=True)
class PrecisionDecision:
    """`bf16`: whether to train under bf16 autocast; `reason`: why, in words (logged and recorded)."""

    bf16: bool
    reason: str
    requested: str = "auto"
    device: str = "cpu"

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "float32"

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "requested": self.requested, "device": self.device, "reason": self.reason}


def _cpuinfo(path: str = "/proc/cpuinfo") -> tuple[str, set[str]]:
    model, flags = "", set()
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "cpu model", "hardware") and not model:
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = set(value.split())
    except OSError:  # not Linux
        pass
    return model or platform.processor() or platform.machine() or "unknown", flags


def _torch_native_bf16() -> bool | None:
    """torch's own cpuinfo check where this torch has it (x86 only); None when it cannot tell."""
    try:
        import torch

        checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        checks = [c for c in checks if c is not None]
        return any(c() for c in checks) if checks else None
    except Exception:  # noqa: BLE001 - private API: any failure means "cannot tell"
        return None


@lru_cache(maxsize=1)
def detect_hardware() -> HardwareInfo:
    """Read this machine once per process (the answer does not change while it runs)."""
    import torch

    model, flags = _cpuinfo()
    override = os.environ.get(ENV_OVERRIDE, "").strip().lower()
    if override in _TRUE | _FALSE:
        native, source = override in _TRUE, f"${ENV_OVERRIDE}"
    elif override:
        raise ValueError(f"${ENV_OVERRIDE}={override!r}: expected 0/1/true/false")
    elif flags:
        native, source = any(f in flags for f in NATIVE_BF16_FLAGS), "/proc/cpuinfo flags"
    else:
        from_torch = _torch_native_bf16()
        native, source = bool(from_torch), "torch cpuinfo" if from_torch is not None else "unknown (assumed no)"
    gpu, gpu_bf16 = None, False
    if torch.cuda.is_available():
        gpu, gpu_bf16 = torch.cuda.get_device_name(0), bool(torch.cuda.is_bf16_supported())
    return HardwareInfo(
        cpu_model=model,
        cpu_flags=tuple(f for f in REPORTED_FLAGS if f in flags),
        cpu_native_bf16=native,
        cpu_native_bf16_source=source,
        logical_cpus=os.cpu_count() or 1,
        gpu=gpu,
        gpu_bf16=gpu_bf16,
        torch_version=torch.__version__,
    )


def _parse_request(value: Any, name: str) -> str:
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return "auto"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return "true" if value.strip().lower() in _TRUE else "false"
    raise ValueError(f"{name}={value!r}: expected auto, true or false")


# Decisions taken in this process since the pipeline last asked: the pipeline records them in stage.json.
_decisions: list[PrecisionDecision] = []


def resolve_bf16(
    value: Any = "auto", *, use_cpu: bool | None = None, hardware: HardwareInfo | None = None, name: str = "bf16"
) -> PrecisionDecision:
    """Turn a `bf16` setting (`auto`/None, or an explicit bool / "true" / "false") into a decision.

    `use_cpu`: train on the CPU even if a GPU is there (None: the GPU when there is one). `hardware` is injectable
    so both branches are testable on any machine; by default this machine is read.
    """
    request = _parse_request(value, name)
    hw = hardware or detect_hardware()
    on_gpu = hw.gpu is not None and not use_cpu
    device = "cuda" if on_gpu else "cpu"
    if request != "auto":
        decision = PrecisionDecision(request == "true", f"{name}={request} set explicitly", request, device)
    elif on_gpu:
        decision = PrecisionDecision(
            hw.gpu_bf16, f"GPU {hw.gpu} {'supports' if hw.gpu_bf16 else 'lacks'} bf16", request, device
        )
    elif hw.cpu_native_bf16:
        decision = PrecisionDecision(
            True, f"CPU {hw.cpu_model} has native bf16 ({hw.cpu_native_bf16_source})", request, device
        )
    else:
        decision = PrecisionDecision(
            False,
            f"CPU {hw.cpu_model} has no native bf16 ({hw.cpu_native_bf16_source}): bf16 autocast is emulated and "
            "slower than float32 there",
            request,
            device,
        )
    logger.info("training precision: %s (%s)", decision.precision, decision.reason)
    if len(_decisions) < 32:  # bounded for a process that never asks; the first one (the training one) is kept
        _decisions.append(decision)
    return decision


def take_decisions() -> list[PrecisionDecision]:
    """The decisions since the last call (and forget them): what the stage that just ran trained in."""
    out = list(_decisions)
    _decisions.clear()
    return out


def run_environment(precision: list[PrecisionDecision] | None = None) -> dict[str, Any]:
    """The fields that make two timings comparable: hardware, torch threads, and the training precision."""
    import torch

    env: dict[str, Any] = {"hardware": detect_hardware().to_dict(), "torch_threads": torch.get_num_threads()}
    if precision is not None:
        # a stage with no training decision ran inference only, in float32
        env["precision"] = precision[0].precision if precision else "float32"  # the first one is the training one
        env["precision_decisions"] = [d.to_dict() for d in precision]
    return env


def reset_accelerator_precision() -> None:
    """Forget the mixed precision that an earlier training run in this process fixed.

    Accelerate keeps its state process-wide, and a second `Accelerator` asking for another precision raises
    ("AcceleratorState has already been initialized"). That happens when one process trains several stages with
    different `bf16` settings (the pipeline, the test suite). transformers' Trainer resets the same state between
    hyper-parameter-search trials. The distributed process group (`PartialState`) is kept.
    """
    try:
        from accelerate.state import AcceleratorState
    except ImportError:  # pragma: no cover - accelerate comes with transformers' training extras
        return
    AcceleratorState._reset_state(reset_partial_state=False)


@dataclass
class AutoPrecisionMixin:
    """Put first in the bases of a `TrainingArguments` (or TRL config) subclass: `bf16` becomes `auto` by default.

    `__post_init__` turns the setting into a bool (via `resolve_bf16`) before transformers validates it, so the
    Trainer sees a plain bool and everything downstream (Accelerate's autocast) is unchanged.
    """

    bf16: str = field(
        default="auto",
        metadata={"help": "bf16 autocast: auto (by the hardware: native bf16 CPU or bf16 GPU), true or false"},
    )

    def __post_init__(self):
        self.bf16 = resolve_bf16(self.bf16, use_cpu=getattr(self, "use_cpu", None)).bf16
        super().__post_init__()


__all__ = [
    "HardwareInfo",
    "PrecisionDecision",
    "AutoPrecisionMixin",
    "detect_hardware",
    "resolve_bf16",
    "take_decisions",
    "run_environment",
    "reset_accelerator_precision",
]
