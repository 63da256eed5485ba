"""Read a GGUF file's header (magic, version, metadata key/values) without loading any weights.

Used to reject non-GGUF and truncated files with a clear message before llama.cpp sees them, and to fill
in a manifest for a local file (``edgemux models add``). Format: github.com/ggml-org/ggml docs/gguf.md.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import ModelFileError

__all__ = ["GGUFHeader", "Skipped", "TensorInfo", "check_file", "read_header"]

MAGIC = b"GGUF"
_SCALARS = {  # GGUF value type -> struct format
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9
# ggml tensor type -> (elements per block, bytes per block), for the types whose layout is certain: a tensor
# of one of these must end inside the file. Others are only checked to start inside it.
_BLOCKS = {
    0: (1, 4), 1: (1, 2), 30: (1, 2), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8),  # F32 F16 BF16 I*
    2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),  # Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),  # Q2_K..Q8_K
}  # fmt: skip
_MAX_ARRAY_KEEP = 64  # long arrays (token lists) are skipped, only their length is kept


@dataclass(frozen=True)
class TensorInfo:
    name: str
    ggml_type: int
    shape: tuple[int, ...]
    nbytes: int  # from the distance to the next tensor's data (alignment padding included)

    @property
    def layer(self) -> int | None:
        """The block index of ``blk.N.*`` tensors; None for embeddings, output and norms outside blocks."""
        if self.name.startswith("blk."):
            return int(self.name.split(".")[1])
        return None


@dataclass(frozen=True)
class GGUFHeader:
    path: Path
    version: int
    tensor_count: int
    metadata: dict[str, Any]
    tensors: tuple[TensorInfo, ...] = ()
    file_nbytes: int = 0

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    def arch_value(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}", default)

    @property
    def context_length(self) -> int | None:
        value = self.arch_value("context_length")
        return int(value) if value is not None else None

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    @property
    def name(self) -> str | None:
        value = self.metadata.get("general.name")
        return value if isinstance(value, str) else None


class _Reader:
    def __init__(self, f: BinaryIO, path: Path) -> None:
        self.f = f
        self.path = path

    def take(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise ModelFileError(f"{self.path}: truncated GGUF header; the file is incomplete, pull it again")
        return data

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.scalar("<Q")
        if n > 1 << 26:
            raise ModelFileError(f"{self.path}: corrupt GGUF header (a {n}-byte string)")
        return self.take(n).decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            item_type, count = self.scalar("<I"), self.scalar("<Q")
            if item_type in _SCALARS and count > _MAX_ARRAY_KEEP:
                self.f.seek(struct.calcsize(_SCALARS[item_type]) * count, 1)
                return Skipped(count)
            if item_type == _STRING and count > _MAX_ARRAY_KEEP:  # the vocabulary: skip, keep its length
                for _ in range(count):
                    self.f.seek(self.scalar("<Q"), 1)
                return Skipped(count)
            items = [self.value(item_type) for _ in range(count)]
            return items if count <= _MAX_ARRAY_KEEP else Skipped(count)
        raise ModelFileError(f"{self.path}: corrupt GGUF header (unknown value type {vtype})")


@dataclass(frozen=True)
class Skipped:
    """A long array (e.g. the vocabulary) that was not kept; its length is."""

    length: int


def _open_checked(path: Path, expected_nbytes: int | None) -> tuple[BinaryIO, int, int]:
    """Open a GGUF file positioned after its version; return (file, size, version) or raise ModelFileError."""
    try:
        size = path.stat().st_size
        f = path.open("rb")
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read: {e.strerror}") from None
    try:
        head = f.read(4)
        if head != MAGIC:
            raise ModelFileError(f"{path}: not a GGUF model file (it starts with {head!r}, expected b'GGUF')")
        if expected_nbytes is not None and size != expected_nbytes:
            raise ModelFileError(
                f"{path}: {size} bytes, expected {expected_nbytes}; the file is truncated or corrupt: `edgemux models pull` fetches it again"
            )
        version = _Reader(f, path).scalar("<I")
        if version not in (2, 3):
            raise ModelFileError(f"{path}: unsupported GGUF version {version}")
    except BaseException:
        f.close()
        raise
    return f, size, version


def check_file(path: Path, expected_nbytes: int | None = None) -> None:
    """The cheap part of read_header: the file exists, is a GGUF, and has the expected size."""
    f, _, _ = _open_checked(path, expected_nbytes)
    f.close()


def read_header(path: Path, expected_nbytes: int | None = None) -> GGUFHeader:
    """Validate that ``path`` is a complete GGUF file and return its metadata.

    Raises ModelFileError for a missing file, a file that is not a GGUF, or one shorter than expected.
    """
    f, size, version = _open_checked(path, expected_nbytes)
    with f:
        r = _Reader(f, path)
        tensor_count, kv_count = r.scalar("<Q"), r.scalar("<Q")
        if kv_count > 1 << 16:
            raise ModelFileError(f"{path}: corrupt GGUF header ({kv_count} metadata entries)")
        metadata: dict[str, Any] = {}
        for _ in range(kv_count):
            key = r.string()
            metadata[key] = r.value(r.scalar("<I"))
        tensors = _read_tensor_infos(r, tensor_count, size, int(metadata.get("general.alignment", 32)))
    return GGUFHeader(path, version, tensor_count, metadata, tensors, size)


def _data_nbytes(ggml_type: int, shape: tuple[int, ...]) -> int | None:
    """Bytes of a tensor's data, from its type's block layout (None for a type not in the table)."""
    if ggml_type not in _BLOCKS:
        return None
    per_block, block_bytes = _BLOCKS[ggml_type]
    return -(-math.prod(shape) // per_block) * block_bytes


def _check_data_inside(path: Path, raw: list[tuple[str, int, tuple[int, ...], int]], data_start: int,
                       file_size: int) -> None:  # fmt: skip
    """Every tensor's data must lie inside the file: a download or copy cut short has a whole header and
    tensors that end past its last byte (llama.cpp would refuse it later, with a less helpful message)."""
    for name, ggml_type, shape, offset in raw:
        end = data_start + offset + (_data_nbytes(ggml_type, shape) or 1)
        if end > file_size:
            raise ModelFileError(
                f"{path}: truncated: tensor {name!r} ends at byte {end:,} but the file has {file_size:,} bytes; "
                "the file is incomplete (copy or download it again)"
            )


def _read_tensor_infos(r: _Reader, count: int, file_size: int, alignment: int) -> tuple[TensorInfo, ...]:
    if count > 1 << 20:
        raise ModelFileError(f"{r.path}: corrupt GGUF header ({count} tensors)")
    raw = []
    for _ in range(count):
        name = r.string()
        n_dims = r.scalar("<I")
        if n_dims > 8:
            raise ModelFileError(f"{r.path}: corrupt GGUF header (a {n_dims}-dimensional tensor)")
        shape = tuple(r.scalar("<Q") for _ in range(n_dims))
        ggml_type, offset = r.scalar("<I"), r.scalar("<Q")
        raw.append((name, ggml_type, shape, offset))
    header_end = r.f.tell()
    data_start = header_end + (-header_end % alignment)
    _check_data_inside(r.path, raw, data_start, file_size)
    # Sizes come from the layout itself, so no table of quantisation block sizes is needed.
    ends = sorted({offset for *_, offset in raw} | {file_size - data_start})
    next_offset = {a: b for a, b in zip(ends, ends[1:], strict=False)}
    return tuple(TensorInfo(n, t, shape, next_offset.get(off, 0) - off) for n, t, shape, off in raw)
