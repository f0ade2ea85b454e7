"""A sharded, resumable tensor cache: rows of named tensors in safetensors shards plus a manifest.

One format for everything precomputed once and read by row index during training: text
embeddings of a prompt pool, teacher-generated paired samples (latents / images, their prompt
indices and seeds). Layout of a cache folder:

    manifest.json            format, tensors {name: {dtype, shape of one row}}, shards
                             [{file, rows, sha256}], rows, shard_rows, complete, metadata (free
                             JSON: teacher, sampler settings, seeds, input fingerprints ...)
    shard-00000.safetensors  the next `shard_rows` rows of every tensor, and so on

Crash safety: a shard is written to a temporary file and renamed into place, and only then is
the manifest rewritten (again temp file + rename). The manifest therefore only ever lists
complete shards; anything else in the folder is debris of a killed write, which `resume`
deletes before continuing after the last listed shard. The writer's `close` marks the cache
complete; the reader refuses an incomplete cache unless asked.

Shards made elsewhere (e.g. by the other processes of a multi-GPU job): `write_shard_file` writes
one shard file atomically anywhere; `TensorCacheWriter.append_shard` checks it against the
cache's tensors and moves it in as the next shard. The result is the same cache, file for file,
as appending the same rows in one process.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from aria_train.runs.atomic import share_files

MANIFEST = "manifest.json"
FORMAT = "aria-tensor-cache"
VERSION = 1
SHARD_PATTERN = re.compile(r"shard-\d{5}\.safetensors(\.tmp)?")


FULL_HASH_BYTES = 64 << 20  # files up to this size are hashed whole by folder_fingerprint
SAMPLED_BLOCKS, BLOCK_BYTES = 64, 64 << 10  # larger ones: this many evenly spaced blocks of this size


def _file_digest(path: Path, size: int) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= FULL_HASH_BYTES:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        else:
            for i in range(SAMPLED_BLOCKS):
                f.seek((size - BLOCK_BYTES) * i // (SAMPLED_BLOCKS - 1))
                digest.update(f.read(BLOCK_BYTES))
    return digest.digest()


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a whole file: a shard's checksum in the manifest (`TensorCache.verify`)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_fingerprint(folder: str | Path, parts: tuple[str, ...] | None = None) -> str:
    """A content hash of the files of a model folder (or of its subfolders / files ``parts``):
    32 hex digits of SHA-256 over each file's relative path, size and content, in path order.

    What a cache made from a teacher records, so that a retrained teacher at the same path is
    told apart (a path or a modification time would not do: copying a folder keeps its content
    and changes its times). Files up to FULL_HASH_BYTES are hashed whole; larger ones (the
    weights of a Stable Diffusion UNet, 3.4 GB) by their size and SAMPLED_BLOCKS evenly spaced
    blocks of BLOCK_BYTES (4 MiB read per file), which any retraining changes. Missing parts
    are skipped (ValueError if there is no file at all).
    """
    folder = Path(folder)
    roots = [folder / part for part in parts] if parts else [folder]
    files = sorted({path for root in roots if root.exists()
                    for path in ([root] if root.is_file() else root.rglob("*")) if path.is_file()})
    if not files:
        raise ValueError(f"{folder} holds no files to fingerprint")
    digest = hashlib.sha256()
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.relative_to(folder).as_posix()}\0{size}\0".encode())
        digest.update(_file_digest(path, size))
    return digest.hexdigest()[:32]


def _shard_file(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _write_json_atomic(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_shard_file(path: str | Path, tensors: dict[str, torch.Tensor | np.ndarray]) -> Path:
    """Write one shard (named tensors sharing their first, row, dimension; copied to the CPU) to
    `path` through a temporary file and a rename, so `path` exists only once complete (and with
    the mode open() gives a new file, not save_file's 0600)."""
    path = Path(path)
    tensors = {name: torch.as_tensor(value).detach().cpu().contiguous() for name, value in tensors.items()}
    sizes = {value.shape[0] if value.dim() else None for value in tensors.values()}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"a shard needs tensors sharing their first (row) dimension, got {[tuple(v.shape) for v in tensors.values()]}")
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, tmp)
    share_files(tmp)
    os.replace(tmp, path)
    return path


def _shard_spec(path: Path) -> tuple[Any, dict[str, dict[str, Any]], set[int]]:
    """(open handle, {name: {dtype, shape of one row}}, {row counts}) of a shard file (ValueError if unreadable)."""
    try:
        handle = safe_open(path, framework="pt")
        found = {key: handle.get_slice(key) for key in handle.keys()}
        spec = {key: {"dtype": _dtype_name(s[:0].dtype), "shape": list(s.get_shape()[1:])} for key, s in found.items()}
        rows = {s.get_shape()[0] for s in found.values()}
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is corrupt: {err}") from None
    return handle, spec, rows


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The validated manifest of the cache in `directory` (FileNotFoundError / ValueError)."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {directory} is not a tensor cache (or its writer never started)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is corrupt: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} manifest")
    if manifest.get("version") != VERSION:
        raise ValueError(f"{path}: unsupported cache version {manifest.get('version')!r} (this code reads {VERSION})")
    try:
        rows = [int(shard["rows"]) for shard in manifest["shards"]]
        consistent = sum(rows) == manifest["rows"] and all(r > 0 for r in rows) and (rows == [] or manifest["tensors"])
    except (KeyError, TypeError, ValueError):
        consistent = False
    if not consistent:
        raise ValueError(f"{path} is corrupt: its shard list does not add up to its row count")
    return manifest


class TensorCacheWriter:
    """Appends rows of named tensors; writes a shard every `shard_rows` rows; `close` finishes.

    Every `append` must give the same tensor names, each with the same dtype and row shape
    (all dimensions after the first); the first dimension is the number of rows and must agree
    between the tensors of one call. Tensors are copied to the CPU. `metadata` (JSON-serialisable)
    is stored in the manifest and can be changed through `.metadata` until `close`.
    As a context manager it closes on success and leaves a resumable cache on an exception.
    """

    def __init__(self, directory: str | Path, shard_rows: int = 65536, metadata: dict[str, Any] | None = None) -> None:
        directory = Path(directory)
        if (directory / MANIFEST).exists():
            raise FileExistsError(f"{directory} already holds a tensor cache: resume it or choose another folder")
        if shard_rows < 1:
            raise ValueError(f"shard_rows must be positive, got {shard_rows}")
        json.dumps(metadata or {})  # fail now, not at the first shard, on metadata JSON cannot hold
        directory.mkdir(parents=True, exist_ok=True)
        self.directory, self.shard_rows, self.metadata = directory, shard_rows, dict(metadata or {})
        self._spec: dict[str, dict[str, Any]] | None = None
        self._shards: list[dict[str, Any]] = []
        self._committed = 0
        self._buffer: dict[str, list[torch.Tensor]] = {}
        self._buffered = 0
        self._closed = False
        self._write_manifest(complete=False)

    @classmethod
    def resume(cls, directory: str | Path) -> TensorCacheWriter:
        """Reopen a cache for appending after its last complete shard (also a closed cache).

        Files a killed write left behind (unlisted shards, temporary files) are deleted. The
        manifest is left as it is until a shard is added (then it lists the cache as incomplete
        until ``close``). ``len(writer)`` is the number of rows kept: continue from that row.
        """
        directory = Path(directory)
        manifest = read_manifest(directory)
        listed = {shard["file"] for shard in manifest["shards"]}
        for path in directory.iterdir():
            if (SHARD_PATTERN.fullmatch(path.name) and path.name not in listed) or path.name == MANIFEST + ".tmp":
                path.unlink()
        for name in listed:
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory / name} is listed in the manifest but missing")
        writer = cls.__new__(cls)
        writer.directory, writer.shard_rows = directory, int(manifest["shard_rows"])
        writer.metadata = manifest["metadata"]
        writer._spec = manifest["tensors"] or None
        writer._shards = manifest["shards"]
        writer._committed = manifest["rows"]
        writer._buffer, writer._buffered, writer._closed = {}, 0, False
        # The manifest is rewritten (as incomplete) only with the first new shard: a resumed
        # writer that is abandoned unused (a run refused for other settings) leaves it as it was.
        return writer

    def __len__(self) -> int:
        """Rows appended so far (written and buffered)."""
        return self._committed + self._buffered

    def append(self, **tensors: torch.Tensor | np.ndarray) -> None:
        """Add rows: each keyword is a tensor name, each value (rows, *row_shape)."""
        if self._closed:
            raise ValueError(f"the writer of {self.directory} is closed")
        if not tensors:
            raise ValueError("append needs at least one named tensor")
        tensors = {name: torch.as_tensor(value).detach().cpu() for name, value in tensors.items()}
        sizes = {value.shape[0] if value.dim() else None for value in tensors.values()}
        if len(sizes) != 1 or None in sizes:
            raise ValueError(f"tensors must share their first (row) dimension, got shapes {[tuple(v.shape) for v in tensors.values()]}")
        spec = {name: {"dtype": _dtype_name(v.dtype), "shape": list(v.shape[1:])} for name, v in tensors.items()}
        if self._spec is None:
            self._spec = spec
        elif spec != self._spec:
            raise ValueError(f"tensors {spec} do not match the cache's {self._spec}")
        for name, value in tensors.items():
            self._buffer.setdefault(name, []).append(value)
        self._buffered += sizes.pop()
        while self._buffered >= self.shard_rows:
            self._write_shard(self.shard_rows)

    def append_shard(self, path: str | Path) -> None:
        """Move the shard file `path` (see `write_shard_file`) into the cache as its next shard.

        Its tensors must have the cache's names, dtypes and row shapes (they set them for a new
        cache) and nothing may be buffered. The file is linked into the cache (copied where the
        file system has no hard links), listed, and only then removed from `path`: a kill before
        the listing leaves the shard at `path` (``resume`` deletes the unlisted copy), a kill after
        it leaves a listed shard and a stale `path`.
        """
        path = Path(path)
        if self._closed:
            raise ValueError(f"the writer of {self.directory} is closed")
        if self._buffered:
            raise ValueError(f"{self.directory}: cannot append a shard file after {self._buffered} buffered rows")
        _, spec, rows = _shard_spec(path)
        if len(rows) != 1 or min(rows) < 1 or (self._spec is not None and spec != self._spec):
            raise ValueError(f"{path} ({spec}, {sorted(rows)} rows) does not fit the cache {self.directory} ({self._spec})")
        name = _shard_file(len(self._shards))
        final = self.directory / name
        final.unlink(missing_ok=True)  # an unlisted copy a killed adoption left
        try:
            os.link(path, final)
        except OSError:
            shutil.copyfile(path, final)
        self._spec = self._spec or spec
        self._shards.append({"file": name, "rows": rows.pop(), "sha256": file_sha256(final)})
        self._committed += self._shards[-1]["rows"]
        self._write_manifest(complete=False)
        path.unlink()

    def replace_shard(self, name: str, path: str | Path) -> None:
        """Move the shard file `path` into the cache in place of its listed shard `name` (one
        `TensorCache.damaged_shards` found, computed again): it must hold that shard's rows of the
        cache's tensors. A kill before the manifest lists the new checksum leaves the shard
        mismatching it, so it is found damaged and computed again once more."""
        path = Path(path)
        if self._closed:
            raise ValueError(f"the writer of {self.directory} is closed")
        entry = next((shard for shard in self._shards if shard["file"] == name), None)
        if entry is None:
            raise ValueError(f"{self.directory} lists no shard {name}")
        _, spec, rows = _shard_spec(path)
        if spec != self._spec or rows != {entry["rows"]}:
            raise ValueError(f"{path} ({spec}, {sorted(rows)} rows) cannot replace {self.directory / name} "
                             f"({self._spec}, {entry['rows']} rows)")
        os.replace(path, self.directory / name)
        entry["sha256"] = file_sha256(self.directory / name)
        self._write_manifest(complete=False)

    def close(self) -> None:
        """Write the last (possibly short) shard and mark the cache complete."""
        if self._closed:
            return
        if self._buffered:
            self._write_shard(self._buffered)
        self._write_manifest(complete=True)
        self._closed = True

    def __enter__(self) -> TensorCacheWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()

    def _write_shard(self, rows: int) -> None:
        joined = {name: torch.cat(parts) for name, parts in self._buffer.items()}
        shard = {name: value[:rows].contiguous() for name, value in joined.items()}
        self._buffer = {name: [value[rows:]] for name, value in joined.items()}
        self._buffered -= rows
        name = _shard_file(len(self._shards))
        write_shard_file(self.directory / name, shard)
        self._shards.append({"file": name, "rows": rows, "sha256": file_sha256(self.directory / name)})
        self._committed += rows
        self._write_manifest(complete=False)

    def _write_manifest(self, complete: bool) -> None:
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "rows": self._committed,
            "shard_rows": self.shard_rows,
            "complete": complete,
            "tensors": self._spec or {},
            "shards": self._shards,
            "metadata": self.metadata,
        }
        _write_json_atomic(self.directory / MANIFEST, manifest)


class TensorCache:
    """Read-only, memory-mapped view of a tensor cache; `get(name, indices)` gathers rows.

    Shards are opened lazily with safetensors' `safe_open` (a memory map), so only the rows
    asked for are read from disk. The object can be pickled (e.g. into DataLoader workers);
    the open shards are not carried along.
    """

    def __init__(self, directory: str | Path, allow_incomplete: bool = False) -> None:
        self.directory = Path(directory)
        manifest = read_manifest(self.directory)
        if not manifest["complete"] and not allow_incomplete:
            raise ValueError(f"the tensor cache in {directory} is incomplete (its writer did not close): resume it")
        for shard in manifest["shards"]:
            if not (self.directory / shard["file"]).is_file():
                raise FileNotFoundError(f"{self.directory / shard['file']} is listed in the manifest but missing")
        self.manifest = manifest
        self.metadata: dict[str, Any] = manifest["metadata"]
        rows = np.array([shard["rows"] for shard in manifest["shards"]], dtype=np.int64)
        self._ends = np.cumsum(rows)
        self._starts = self._ends - rows
        self._handles: dict[int, Any] = {}

    def __len__(self) -> int:
        return int(self.manifest["rows"])

    @property
    def names(self) -> list[str]:
        return list(self.manifest["tensors"])

    def shape(self, name: str) -> tuple[int, ...]:
        """(rows, *row_shape) of tensor `name`."""
        return (len(self), *self._spec(name)["shape"])

    def dtype(self, name: str) -> torch.dtype:
        return getattr(torch, self._spec(name)["dtype"])

    def get(self, name: str, indices: np.ndarray | torch.Tensor | list[int] | range | None = None) -> torch.Tensor:
        """Rows `indices` (any order, repeats allowed; None: all rows) of tensor `name`, on the CPU.

        Rows are grouped by shard and read in ascending order, then put back in the order asked.
        """
        spec = self._spec(name)
        if indices is None:
            indices = np.arange(len(self))
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"row index out of range [0, {len(self)}) in {self.directory}")
        unique, inverse = np.unique(indices, return_inverse=True)
        shard_of = np.searchsorted(self._ends, unique, side="right")
        parts = []
        for shard in np.unique(shard_of):
            local = unique[shard_of == shard] - self._starts[shard]
            handle = self._open(int(shard))
            if local.size == self._ends[shard] - self._starts[shard]:
                parts.append(handle.get_tensor(name))
            else:
                parts.append(handle.get_slice(name)[local.tolist()])
        if not parts:
            return torch.empty((0, *spec["shape"]), dtype=self.dtype(name))
        return torch.cat(parts)[torch.from_numpy(inverse)]

    def _spec(self, name: str) -> dict[str, Any]:
        if name not in self.manifest["tensors"]:
            raise KeyError(f"no tensor {name!r} in {self.directory} (has {', '.join(self.names) or 'none'})")
        return self.manifest["tensors"][name]

    def verify(self) -> int:
        """Check every shard against the SHA-256 its writer put in the manifest (reads every
        byte); ValueError naming the first corrupt shard. Returns how many shards had a checksum
        (shards of caches written before checksums existed have none and are not checked)."""
        for entry in self.manifest["shards"]:
            if not self._checksum_matches(entry):
                raise ValueError(f"{self.directory / entry['file']} is corrupt: its SHA-256 differs from the "
                                 "manifest's; rebuild the cache (rerunning the `aria cache` command that made it "
                                 "computes the corrupt shards again)")
        return sum("sha256" in entry for entry in self.manifest["shards"])

    def damaged_shards(self, checksums: bool = True, progress: bool = False) -> dict[str, range]:
        """{file: its rows} of the listed shards that do not match the manifest: unreadable, with
        other tensors or rows than it lists, or (with `checksums`; reads every byte, as `verify`)
        with another SHA-256 than the one their writer recorded. `progress`: a bar over the shards."""
        damaged = {}
        for index in tqdm(range(len(self.manifest["shards"])), desc=f"checking {self.directory.name}",
                          unit="shard", disable=not progress):
            entry = self.manifest["shards"][index]
            try:
                self._open(index)
                intact = not checksums or self._checksum_matches(entry)
            except ValueError:
                intact = False
            if not intact:
                damaged[entry["file"]] = range(int(self._starts[index]), int(self._ends[index]))
        return damaged

    def _checksum_matches(self, entry: dict[str, Any]) -> bool:
        """Whether the listed shard ``entry`` has the SHA-256 its writer recorded (True for shards
        of caches written before checksums existed, which have none)."""
        return "sha256" not in entry or file_sha256(self.directory / entry["file"]) == entry["sha256"]

    def _open(self, shard: int) -> Any:
        if shard not in self._handles:
            entry = self.manifest["shards"][shard]
            path = self.directory / entry["file"]
            handle, actual, rows = _shard_spec(path)
            if actual != self.manifest["tensors"] or rows != {entry["rows"]}:
                raise ValueError(f"{path} does not match the manifest (found {actual} with {rows} rows)")
            self._handles[shard] = handle
        return self._handles[shard]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_handles": {}}
