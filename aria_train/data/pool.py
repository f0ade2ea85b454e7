"""The prompt pool: a table of prompts (optionally with region ids and groups), read by index.

Files: .txt (one prompt per line; blank lines skipped), .jsonl (one JSON object per line),
.csv (with a header), .parquet and .arrow (Arrow IPC file). Columns: `text` (str, required),
`region` (int in [0, 2^40), optional), `group` (str, optional, e.g. "seen" / "unseen" / "under"); any
others are kept in `.table`. The pool is held as an Arrow table, not as Python strings, so that
`texts(indices)` materialises only the prompts asked for.

An .arrow pool is memory-mapped, not read: the table's buffers are the file's pages, so opening
it costs no memory and no time, and every process that opens the same file (the ranks of a
data-parallel job, DataLoader workers) shares one copy through the OS page cache. Validation,
`texts`, `regions` (a zero-copy numpy view when the column is one chunk of int64) and
`num_regions` read the mapped pages without copying the columns. `PromptPool.to_arrow(path)`
writes any pool in that layout (uncompressed, one record batch, int64 regions); the other formats
are read into memory by each process.
"""
from __future__ import annotations

import hashlib
import os
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.ipc as ipc
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from aria_train.console import first_line

FORMATS = (".txt", ".jsonl", ".csv", ".parquet", ".arrow")
# Region ids at or above this are refused: no real pool has 2^40 regions, and per-region arrays
# (the sampler's counts, the tracker) over such an id would need terabytes.
REGION_LIMIT = 2**40
FINGERPRINT_ROWS = 1 << 20  # text rows hashed per step of PromptPool.fingerprint


def _first_true(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.index(mask, True).as_py())


STRING_LIMIT = 2**31 - 1  # bytes: to_arrow writes a larger text column as large_string
PARQUET_CHUNK_ROWS = 1 << 20  # rows of row groups read together into one chunk


def _read_parquet(path: Path) -> pa.Table:
    """A parquet file as a table whose columns come in few chunks: consecutive row groups of
    at least PARQUET_CHUNK_ROWS rows together are read as one chunk (more only past Arrow's 2 GiB
    per string chunk). pq.read_table gives chunks of 128 Ki rows (77 at 10^7 prompts), each
    visited by every `texts` call; ParquetFile.read gives one chunk, but its buffers grow by
    copies: at 10^7 short prompts its peak RSS is ~300 MB (50%) above reading 2^20 rows at a
    time, for `texts` calls of 0.1 ms instead of 0.6 ms (256 prompts from 10 chunks)."""
    parquet = pq.ParquetFile(path)
    tables, groups, rows = [], [], 0
    for group in range(parquet.num_row_groups):
        groups.append(group)
        rows += parquet.metadata.row_group(group).num_rows
        if rows >= PARQUET_CHUNK_ROWS:
            tables.append(parquet.read_row_groups(groups))
            groups, rows = [], 0
    if groups:
        tables.append(parquet.read_row_groups(groups))
    return pa.concat_tables(tables) if tables else parquet.read()


def _map_arrow(path: Path) -> pa.Table:
    """An Arrow IPC file (or stream) as a table over a memory map of it: zero copy unless the
    file is compressed (then its buffers are decompressed into memory)."""
    source = pa.memory_map(str(path), "r")
    try:
        return ipc.open_file(source).read_all()
    except pa.ArrowInvalid:
        source.seek(0)  # not the file format: perhaps the stream format
        return ipc.open_stream(source).read_all()


class PromptPool:
    """Prompts with optional region ids and groups; build with `from_file` or `from_frame`."""

    def __init__(
        self,
        table: pa.Table,
        text_column: str = "text",
        region_column: str = "region",
        group_column: str = "group",
        source: str = "table",
    ) -> None:
        """Validate `table` (see the module docstring); `source` names it in error messages.
        Missing region / group columns are allowed; a missing text column is not."""
        if table.num_rows == 0:
            raise ValueError(f"{source}: the prompt pool is empty")
        names = table.column_names
        if text_column not in names:
            raise ValueError(f"{source}: no text column {text_column!r} (columns: {', '.join(names)})")
        self._check_strings(table, text_column, source)
        if region_column in names:
            regions = table.column(region_column)
            if not pa.types.is_integer(regions.type):
                raise ValueError(f"{source}: region column {region_column!r} must hold integers, got {regions.type}")
            if regions.null_count:
                raise ValueError(f"{source}: region column {region_column!r} is missing at row {_first_true(pc.is_null(regions))}")
            if pc.min(regions).as_py() < 0:
                raise ValueError(f"{source}: negative region id at row {_first_true(pc.less(regions, 0))}")
            if pc.max(regions).as_py() >= REGION_LIMIT:
                row = _first_true(pc.greater_equal(regions, REGION_LIMIT))
                raise ValueError(f"{source}: region id {regions[row].as_py()} at row {row} is out of range "
                                 f"(ids must be in [0, 2^40))")
        if group_column in names:
            self._check_strings(table, group_column, source)
        self.table = table
        self.text_column, self.region_column, self.group_column = text_column, region_column, group_column
        self.source = source
        self.mapped: Path | None = None  # the .arrow file the table maps (set by from_file)

    @staticmethod
    def _check_strings(table: pa.Table, column: str, source: str) -> None:
        values = table.column(column)
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            raise ValueError(f"{source}: column {column!r} must hold strings, got {values.type}")
        if values.null_count:
            raise ValueError(f"{source}: column {column!r} is missing at row {_first_true(pc.is_null(values))}")

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        text_column: str = "text",
        region_column: str = "region",
        group_column: str = "group",
    ) -> PromptPool:
        """Read a .txt / .jsonl / .csv / .parquet pool, or map an .arrow one (FileNotFoundError /
        ValueError on bad input)."""
        path = Path(path)
        if path.is_dir():
            raise ValueError(f"prompt file {path} is a folder: give the pool file in it (e.g. pool.parquet)")
        if not path.is_file():
            raise FileNotFoundError(f"prompt file {path} not found")
        suffix = path.suffix.lower()
        if suffix not in FORMATS:
            raise ValueError(f"{path}: unknown prompt file type {suffix!r} (expected one of {', '.join(FORMATS)})")
        try:
            if suffix == ".txt":
                with open(path, encoding="utf-8") as f:
                    lines = [line.strip() for line in f]
                table = pa.table({text_column: pa.array([line for line in lines if line], pa.large_string())})
            elif suffix == ".jsonl":
                table = pa_json.read_json(path)
            elif suffix == ".csv":
                # Texts and groups stay strings even when a value looks like a number.
                types = {text_column: pa.large_string(), group_column: pa.large_string()}
                table = pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(column_types=types))
            elif suffix == ".parquet":
                table = _read_parquet(path)
            else:
                table = _map_arrow(path)
        except (pa.ArrowException, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: cannot read {suffix[1:]} prompt file: {first_line(err)}") from None
        pool = cls(table, text_column, region_column, group_column, source=str(path))
        if suffix == ".arrow":
            pool.mapped = path.resolve()
        return pool

    def to_arrow(self, path: str | Path) -> Path:
        """Write the pool as an .arrow file that `from_file` maps without copying; returns the path.

        Every column is kept, all in one uncompressed record batch: regions as int64 (so that
        `regions` is a view of the file), texts and groups as string, or as large_string (64-bit
        offsets) when a column holds STRING_LIMIT bytes or more. The conversion holds one more
        copy of the table in memory while it writes; the file is written under a temporary name
        and renamed into place, so a reader never sees half of it.
        """
        path = Path(path)
        if path.suffix.lower() != ".arrow":
            raise ValueError(f"{path}: an Arrow pool file must end in .arrow")
        table = self.table
        for name in (self.text_column, self.group_column, self.region_column):
            if name not in table.column_names:
                continue
            if name == self.region_column:
                kind = pa.int64()
            else:  # one chunk of string holds < 2 GiB of text; nbytes (offsets included) bounds it
                kind = pa.string() if table.column(name).nbytes < STRING_LIMIT else pa.large_string()
            if table.column(name).type != kind:
                table = table.set_column(table.column_names.index(name), name, table.column(name).cast(kind))
        metadata = {k: v for k, v in (table.schema.metadata or {}).items() if k != b"pandas"}  # pandas' dtypes are stale
        table = table.replace_schema_metadata(metadata or None).combine_chunks()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table, max_chunksize=max(1, table.num_rows))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def __getstate__(self) -> dict:
        """A mapped pool pickles as its file, which the unpickling process maps again (sharing
        its pages), instead of as a copy of every column."""
        if self.mapped is None:
            return self.__dict__
        return {"mapped": self.mapped, "columns": (self.text_column, self.region_column, self.group_column)}

    def __setstate__(self, state: dict) -> None:
        if "columns" in state and "table" not in state:
            state = PromptPool.from_file(state["mapped"], *state["columns"]).__dict__
        self.__dict__.update(state)

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        text_column: str = "text",
        region_column: str = "region",
        group_column: str = "group",
    ) -> PromptPool:
        """A pool over an in-memory DataFrame (its index is dropped)."""
        try:
            table = pa.Table.from_pandas(frame, preserve_index=False)
        except (pa.ArrowException, TypeError) as err:
            raise ValueError(f"data frame: cannot convert to a prompt pool: {first_line(err)}") from None
        return cls(table, text_column, region_column, group_column, source="data frame")

    def __len__(self) -> int:
        return self.table.num_rows

    def texts(self, indices: np.ndarray | list[int] | range) -> list[str]:
        """The prompts at `indices` (any order, repeats allowed), as Python strings."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"prompt index out of range [0, {len(self)})")
        chunks, starts = self._text_chunks
        if len(chunks) == 1:
            return chunks[0].take(pa.array(indices)).to_pylist()
        # Take from each chunk its own rows: ChunkedArray.take would first concatenate every
        # chunk, i.e. copy the whole text column (hundreds of MB at 10^7 prompts) on each call.
        if not indices.size:
            return []
        chunk = np.searchsorted(starts, indices, side="right") - 1
        by_chunk = np.argsort(chunk, kind="stable")
        hit, first = np.unique(chunk[by_chunk], return_index=True)
        pieces = [chunks[c].take(pa.array(rows - starts[c]))
                  for c, rows in zip(hit.tolist(), np.split(indices[by_chunk], first[1:]))]
        back = np.empty_like(by_chunk)
        back[by_chunk] = np.arange(by_chunk.size)
        return pa.concat_arrays(pieces).take(pa.array(back)).to_pylist()

    @cached_property
    def _text_chunks(self) -> tuple[list[pa.Array], np.ndarray]:
        """The text column's non-empty chunks and the first row of each."""
        chunks = [chunk for chunk in self.table.column(self.text_column).chunks if len(chunk)]  # the pool is not empty
        return chunks, np.cumsum([0] + [len(c) for c in chunks[:-1]]).astype(np.int64)

    def count_blank(self) -> int:
        """How many prompts are empty or only whitespace: kept (dropping rows would break the row
        alignment of paired caches), they condition like the null text when drawn."""
        blank = pc.match_substring_regex(self.table.column(self.text_column), r"^[\s\p{Z}]*$")  # no copy of the texts
        return int(pc.sum(blank).as_py() or 0)

    def fingerprint(self) -> str:
        """A content hash of the text column (what embeddings and teacher samples depend on): 32 hex
        digits of SHA-256 over every prompt's UTF-8 length and bytes, in row order.

        Equal for the same prompts in the same order whatever the file format, chunking or string
        type (a .parquet pool and its .arrow conversion agree), so a cache made from a pool can
        tell a changed pool at the same path (same row count, other texts) from a moved or
        converted one. It reads the text bytes once (SHA-256 at ~1 GB/s: ~0.5 s for 10^7 short
        prompts), holding at most FINGERPRINT_ROWS lengths at a time; a mapped pool is not copied.
        """
        lengths, data = hashlib.sha256(), hashlib.sha256()
        for chunk in self.table.column(self.text_column).chunks:
            if not len(chunk):
                continue
            _, offsets_buffer, data_buffer = chunk.buffers()
            kind = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
            offsets = np.frombuffer(offsets_buffer, dtype=kind)[chunk.offset : chunk.offset + len(chunk) + 1]
            for lo in range(0, len(chunk), FINGERPRINT_ROWS):
                part = offsets[lo : lo + FINGERPRINT_ROWS + 1]
                lengths.update(np.diff(part).astype("<i8").tobytes())
            if data_buffer is not None and offsets[-1] > offsets[0]:
                data.update(memoryview(data_buffer)[int(offsets[0]) : int(offsets[-1])])
        return hashlib.sha256(lengths.digest() + data.digest()).hexdigest()[:32]

    @cached_property
    def regions(self) -> np.ndarray | None:
        """Region id per prompt (int64, (N,)), or None without a region column."""
        if self.region_column not in self.table.column_names:
            return None
        return self.table.column(self.region_column).to_numpy().astype(np.int64, copy=False)

    @cached_property
    def groups(self) -> np.ndarray | None:
        """Group name per prompt (object array of str, (N,)), or None without a group column."""
        if self.group_column not in self.table.column_names:
            return None
        return self.table.column(self.group_column).to_numpy()

    @property
    def num_regions(self) -> int | None:
        """K = largest region id + 1 (ids are in [0, K)), or None without a region column."""
        return None if self.regions is None else int(self.regions.max()) + 1
