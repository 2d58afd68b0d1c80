"""`ptcli env`: versions, devices, caches and offline state, for bug reports and set-up checks."""

import platform
from importlib import metadata

from ptcli.cli.options import JsonOption
from ptcli.output import emit

_PACKAGES = ("ptcli", "torch", "torchvision", "torchaudio", "transformers", "timm", "accelerate")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def collect() -> dict:
    import torch

    from ptcli.models import weights

    cuda = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            cuda.append({"device": f"cuda:{index}", "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)})
    mps = getattr(torch.backends, "mps", None)
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in _PACKAGES},
        "torch_cuda_build": torch.version.cuda,
        "devices": {
            "cuda": cuda,
            "mps": bool(mps is not None and mps.is_available()),
            "cpu_threads": torch.get_num_threads(),
        },
        "caches": {
            "ptcli": str(weights.ptcli_cache_dir()),
            "torch_hub": str(weights.torch_hub_dir()),
            "huggingface": str(weights.hf_cache_dir()),
        },
        "offline": weights.is_offline(),
        "offline_reason": weights.offline_reason() or None,
    }


def env(json_output: JsonOption = False) -> None:
    """Show Python and library versions, devices found, cache folders and offline state."""
    info = collect()
    if json_output:
        import json

        emit(json.dumps(info, indent=2))
        return
    emit(f"python       {info['python']} ({info['platform']})")
    for name, version in info["versions"].items():
        emit(f"{name:<12} {version or 'not installed'}")
    devices = info["devices"]
    cuda = ", ".join(f"{d['device']} {d['name']} ({d['memory_gib']} GiB)" for d in devices["cuda"])
    emit(f"cuda         {cuda or 'none'} (torch built for CUDA {info['torch_cuda_build'] or '-'})")
    emit(f"mps          {'available' if devices['mps'] else 'none'}")
    emit(f"cpu threads  {devices['cpu_threads']}")
    for name, path in info["caches"].items():
        emit(f"cache        {name}: {path}")
    emit(f"offline      {'yes, ' + info['offline_reason'] if info['offline'] else 'no'}")
