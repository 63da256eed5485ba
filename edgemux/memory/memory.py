"""Memory arithmetic (pure): how many bytes a model will hold resident, from its GGUF header alone, and
whether a set of models fits a byte budget.

The model of llama.cpp's memory, checked against its own buffer report on the default pool:

- weights: the whole file is memory-mapped and populated; on CPUs, Q4_0/Q4_K/IQ4_NL matrices inside the
  blocks are also *repacked* into a second buffer for faster kernels (596 MiB extra for Qwen2.5-1.5B);
  layers offloaded to a GPU live there instead.
- KV cache: cells x layers x (K + V heads x head size) x 2 bytes (f16). edgemux's cache is unified: the
  prompt is stored once and each of the k samples adds its own tokens, so cells = n_ctx + (k - 1) x
  max_tokens. Sliding-window layers get full-size caches (llama.cpp's default, ``swa_full``).
- compute: llama.cpp reserves one ubatch (512 tokens) of activations, plus logits for the k outputs
  edgemux asks for (``n_outputs_max``), plus the attention mask.
- other: the output buffer (k x vocab floats) and the tokenizer's tables.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..catalog.gguf import GGUFHeader, Skipped
from ..errors import InvalidRequestError, PromptTooLongError

__all__ = [
    "MemoryEstimate",
    "ModelShape",
    "Plan",
    "estimate",
    "format_bytes",
    "kv_cells",
    "parse_bytes",
    "plan",
]

N_UBATCH = 512
_REPACKED_TYPES = {2, 12, 20}  # ggml Q4_0, Q4_K, IQ4_NL: repacked into interleaved layouts on CPU
_BYTES_PER_VOCAB_ENTRY = 100  # llama.cpp's tokenizer tables, measured: ~5-15 MiB for 49k-152k tokens
TOLERANCE = 0.15  # warn when the measured bytes differ from the estimate by more than this


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about a model; read from its GGUF header."""

    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim_k: int
    head_dim_v: int
    n_vocab: int
    file_nbytes: int
    layer_nbytes: tuple[int, ...]  # weights of each block
    repack_nbytes: tuple[int, ...]  # repackable weights of each block
    output_nbytes: int  # output matrix and final norm (offloaded with the last layer group)

    def summary(self) -> dict[str, int]:
        """The manifest form (``shape:``): per-layer figures folded into totals, enough to plan offline."""
        return {
            "n_layer": self.n_layer, "n_embd": self.n_embd, "n_ff": self.n_ff, "n_head": self.n_head,
            "n_head_kv": self.n_head_kv, "head_dim_k": self.head_dim_k, "head_dim_v": self.head_dim_v,
            "n_vocab": self.n_vocab, "file_nbytes": self.file_nbytes, "layers_nbytes": sum(self.layer_nbytes),
            "repack_nbytes": sum(self.repack_nbytes), "output_nbytes": self.output_nbytes,
        }  # fmt: skip

    @classmethod
    def from_summary(cls, d: dict[str, int]) -> ModelShape:
        n = d["n_layer"]
        return cls(
            n_layer=n, n_embd=d["n_embd"], n_ff=d["n_ff"], n_head=d["n_head"], n_head_kv=d["n_head_kv"],
            head_dim_k=d["head_dim_k"], head_dim_v=d["head_dim_v"], n_vocab=d["n_vocab"],
            file_nbytes=d["file_nbytes"], layer_nbytes=(d["layers_nbytes"] // n,) * n,
            repack_nbytes=(d["repack_nbytes"] // n,) * n, output_nbytes=d["output_nbytes"],
        )  # fmt: skip

    @classmethod
    def from_header(cls, header: GGUFHeader) -> ModelShape:
        def arch(key: str, default: int | None = None) -> int:
            value = header.arch_value(key, default)
            if isinstance(value, list):  # per-layer values (some architectures): the largest bounds memory
                value = max(value)
            if value is None:
                raise ValueError(f"{header.path}: GGUF metadata lacks {header.architecture}.{key}")
            return int(value)

        n_layer, n_embd, n_head = arch("block_count"), arch("embedding_length"), arch("attention.head_count")
        tokens = header.metadata.get("tokenizer.ggml.tokens")
        n_vocab = tokens.length if isinstance(tokens, Skipped) else len(tokens or []) or arch("vocab_size", 32000)
        layers, repack = [0] * n_layer, [0] * n_layer
        output = 0
        for t in header.tensors:
            if t.layer is not None and t.layer < n_layer:
                layers[t.layer] += t.nbytes
                if t.ggml_type in _REPACKED_TYPES and len(t.shape) == 2:
                    repack[t.layer] += t.nbytes
            elif t.name.startswith("output"):
                output += t.nbytes
        return cls(
            n_layer=n_layer,
            n_embd=n_embd,
            n_ff=arch("feed_forward_length"),
            n_head=n_head,
            n_head_kv=arch("attention.head_count_kv", n_head),
            head_dim_k=arch("attention.key_length", n_embd // n_head),
            head_dim_v=arch("attention.value_length", n_embd // n_head),
            n_vocab=n_vocab,
            file_nbytes=header.file_nbytes,
            layer_nbytes=tuple(layers),
            repack_nbytes=tuple(repack),
            output_nbytes=output,
        )


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one loaded model will hold, split by purpose and by device."""

    model: str
    k: int
    cells: int
    weights_bytes: int  # host: mapped file + repacked copies
    kv_bytes: int
    compute_bytes: int
    other_bytes: int
    gpu_bytes: int = 0  # weights, KV and compute of offloaded layers

    @property
    def total_bytes(self) -> int:
        """Host (CPU RAM) bytes: what RSS grows by."""
        return self.weights_bytes + self.kv_bytes + self.compute_bytes + self.other_bytes


def check_context(name: str, prompt_tokens: int, k: int, max_tokens: int, *, cells: int, trained: int) -> int:
    """KV cells a prompt (stored once) and k samples of up to max_tokens need; PromptTooLongError with the
    numbers when that exceeds the ``cells`` the model's context was given at load, or one sample exceeds
    what it was ``trained`` for (0: unknown). Contexts never grow: their bytes were granted at load."""
    needed = prompt_tokens + k * max_tokens
    if trained and prompt_tokens + max_tokens > trained:
        raise PromptTooLongError(
            f"the prompt is {prompt_tokens} tokens and a sample may add {max_tokens}, but {name} "
            f"was trained for {trained} tokens: shorten the question or lower --max-tokens"
        )
    if needed > cells:
        raise PromptTooLongError(
            f"the prompt is {prompt_tokens} tokens and {k} samples of up to {max_tokens} tokens need "
            f"{needed} KV cells, but {name} was loaded with {cells}: shorten the question, "
            f"lower --max-tokens or -k, or raise --n-ctx to at least {prompt_tokens + max_tokens} "
            "(the context of one sample)"
        )
    return needed


def kv_cells(n_ctx: int, k: int, max_tokens: int) -> int:
    """KV cells for k samples sharing one prompt: n_ctx covers prompt + one answer; each other sample adds its answer."""
    return n_ctx + (k - 1) * max_tokens


def _gpu_layers(n_layer: int, n_gpu_layers: int) -> tuple[set[int], bool]:
    """llama.cpp offloads the *last* layers; asking for more than n_layer (or -1) offloads the output too."""
    if n_gpu_layers < 0 or n_gpu_layers > n_layer:
        return set(range(n_layer)), True
    return set(range(n_layer - n_gpu_layers, n_layer)), False


def estimate(name: str, shape: ModelShape, *, cells: int, k: int, n_gpu_layers: int = 0) -> MemoryEstimate:
    on_gpu, output_on_gpu = _gpu_layers(shape.n_layer, n_gpu_layers)
    gpu_weights = sum(shape.layer_nbytes[i] for i in on_gpu) + (shape.output_nbytes if output_on_gpu else 0)
    host_weights = shape.file_nbytes - gpu_weights
    repack = sum(b for i, b in enumerate(shape.repack_nbytes) if i not in on_gpu)
    kv_per_layer = cells * shape.n_head_kv * (shape.head_dim_k + shape.head_dim_v) * 2  # f16 K and V
    activations = N_UBATCH * 4 * (3 * shape.n_ff + 2 * shape.n_embd + 2 * shape.n_head * shape.head_dim_k)
    compute = activations + k * shape.n_vocab * 4 + N_UBATCH * cells * 2  # + logits + attention mask
    gpu_kv = kv_per_layer * len(on_gpu)
    gpu_compute = compute if on_gpu else 0
    return MemoryEstimate(
        model=name,
        k=k,
        cells=cells,
        weights_bytes=host_weights + repack,
        kv_bytes=kv_per_layer * shape.n_layer - gpu_kv,
        compute_bytes=compute,  # a host copy is kept even when a GPU computes (llama.cpp's CPU buffer)
        other_bytes=k * shape.n_vocab * 4 + shape.n_vocab * _BYTES_PER_VOCAB_ENTRY,
        gpu_bytes=gpu_weights + gpu_kv + gpu_compute,
    )


# -- budgets ---------------------------------------------------------------------------------------------

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "t": 1000**4, "tb": 1000**4, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip


def parse_bytes(text: str | int) -> int:
    """'3GiB' -> 3221225472, '512MB' -> 512000000, '1.5G' -> 1500000000, 4096 -> 4096."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise InvalidRequestError(f"cannot read {text!r} as a size: write e.g. 3GiB, 1500MiB, 2GB or a byte count")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}" if unit == "GiB" else f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


# -- plans -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    estimates: tuple[MemoryEstimate, ...]
    budget_bytes: int
    advice: str = ""
    remote: tuple[str, ...] = ()  # members another server runs: nothing here counts against the budget

    @property
    def total_bytes(self) -> int:
        return sum(e.total_bytes for e in self.estimates)

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.budget_bytes

    @property
    def largest(self) -> MemoryEstimate:
        return max(self.estimates, key=lambda e: e.total_bytes)


def plan(
    models: Sequence[tuple[str, ModelShape]],
    *,
    budget_bytes: int,
    k: int,
    n_ctx: int,
    max_tokens: int,
    n_gpu_layers: int = 0,
    remote: tuple[str, ...] = (),
) -> Plan:
    """Estimate every model and say whether the set fits; when it does not, name the cheapest fix.
    ``remote`` models are listed as such and cost nothing here."""

    def estimates(k_: int, n_ctx_: int) -> tuple[MemoryEstimate, ...]:
        cells = kv_cells(n_ctx_, k_, max_tokens)
        return tuple(estimate(n, s, cells=cells, k=k_, n_gpu_layers=n_gpu_layers) for n, s in models)

    result = estimates(k, n_ctx)
    first = Plan(result, budget_bytes, remote=remote)
    if first.fits:
        return first
    return Plan(result, budget_bytes, _cheapest_fix(first, estimates, k, n_ctx, max_tokens, budget_bytes), remote)


def _cheapest_fix(
    first: Plan,
    estimates: Callable[[int, int], tuple[MemoryEstimate, ...]],
    k: int,
    n_ctx: int,
    max_tokens: int,
    budget_bytes: int,
) -> str:
    """Try the fixes from least to most loss: fewer samples, a shorter context, one model fewer."""
    need, have = format_bytes(first.total_bytes), format_bytes(budget_bytes)
    lead = f"the models need {need} together, the budget is {have}"
    for smaller_k in range(k - 1, 0, -1):
        if sum(e.total_bytes for e in estimates(smaller_k, n_ctx)) <= budget_bytes:
            return f"{lead}: lower -k to {smaller_k}"
    for smaller_ctx in (n_ctx * 3 // 4, n_ctx // 2, n_ctx // 4):
        if smaller_ctx > max_tokens and sum(e.total_bytes for e in estimates(k, smaller_ctx)) <= budget_bytes:
            return f"{lead}: lower n_ctx to {smaller_ctx}"
    # Drop the model whose absence frees the least while still fitting (keep as much of the ensemble as we can).
    fitting = [e for e in first.estimates if first.total_bytes - e.total_bytes <= budget_bytes]
    if len(first.estimates) > 1 and fitting:
        drop = min(fitting, key=lambda e: e.total_bytes)
        return f"{lead}: drop {drop.model} ({format_bytes(drop.total_bytes)}); the others fit"
    big = first.largest
    if big.total_bytes > budget_bytes:
        return f"{big.model} alone needs {format_bytes(big.total_bytes)} with k={k}, the budget is {have}: raise --budget or drop {big.model}"
    return f"{lead}: raise --budget, or use fewer models (each fits alone, so they can also take turns)"
