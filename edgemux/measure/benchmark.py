"""``edgemux bench``: throughput in the form llama.cpp users already read.

- ``pp<P>``: evaluate P prompt tokens from an empty cache, tokens/s (llama-bench's prompt processing);
- ``tg<N>``: generate N tokens for one sequence through the engine edgemux decodes with (sampler
  included, end-of-generation forbidden so every run has N tokens), tokens/s;
- k-scaling: k sequences over one shared P-token prompt, N tokens each, as llama-batched-bench reports it
  (prompt time, generation time, generated tokens/s, all tokens/s);
- an ensemble row (with ``--profile``): answers per minute, tokens per answer and peak memory of a profile
  on a few fixed questions.

Every measurement is repeated after one warm-up run; rows report mean ± standard deviation.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..memory import osmemory
from ..specs import ModelSpec
from ..types import Sampling

if TYPE_CHECKING:  # the engine (llama.cpp) is imported only when something is measured
    from ..engine.engine import Engine

__all__ = [
    "EnsembleRow", "ScalingRow", "ThroughputRow", "hardware", "measure_models", "run_ensemble", "run_scaling",
    "run_throughput",
]  # fmt: skip

QUESTIONS = (  # the fixed ensemble set: short GSM8K-style problems with one numeric answer each
    "A shop sells pens at $3 each. Ana buys 4 pens and pays with a $20 bill. How much change does she get?",
    "A train travels 60 miles per hour for 2.5 hours. How many miles does it travel?",
    "Tom has 3 boxes with 12 apples each. He gives away 10 apples. How many apples does he have left?",
    "A recipe needs 250 grams of flour per cake. How many grams of flour are needed for 6 cakes?",
    "Sara reads 15 pages a day. How many days does she need to read a 180-page book?",
)


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        return cls(statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)

    def __str__(self) -> str:
        return f"{self.mean:.2f} ± {self.std:.2f}"


@dataclass(frozen=True)
class ThroughputRow:
    model: str
    title: str
    nbytes: int
    params_billions: float | None
    backend: str
    n_gpu_layers: int
    threads: int
    test: str  # "pp512", "tg128"
    tokens_per_s: Stat
    runs: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class ScalingRow:
    model: str
    k: int
    prompt_tokens: int
    tokens_per_sequence: int
    prompt_s: Stat
    generation_s: Stat
    generation_tokens_per_s: Stat  # k × N / generation time
    total_tokens_per_s: Stat  # (P + k × N) / all time


@dataclass(frozen=True)
class EnsembleRow:
    profile: str
    models: list[str]
    k: int
    questions: int
    answers_per_minute: float
    tokens_per_answer: float
    seconds_per_answer: float
    peak_rss_bytes: int


def backend_name() -> str:
    from ..engine.llama import system_info

    info = str(system_info()["system_info"])
    for name in ("CUDA", "Metal", "Vulkan", "ROCm", "SYCL"):
        if f"{name} :" in info or f"{name.upper()} :" in info:
            return name
    return "CPU"


def random_prompt(engine: Engine, n: int, seed: int = 0) -> list[int]:
    """n random token ids (as llama-bench uses): the content does not change the cost."""
    rng = random.Random(seed)
    return [rng.randrange(engine.n_vocab) for _ in range(n)]


def time_generation(engine: Engine, prompt: list[int], k: int, n: int, seed: int = 0) -> tuple[float, float]:
    """(prompt seconds, generation seconds) for k sequences of n tokens each over a shared prompt."""
    sampling = Sampling(k=k, max_tokens=n, temperature=0.0, seed=seed)
    first = last = 0.0
    for i, step in enumerate(engine.generate(prompt, sampling, sampling.seeds(), ignore_eos=True)):
        if i == 0:
            first = step.elapsed_s  # prompt evaluated, first token of every sequence sampled
        last = step.elapsed_s
    return first, last - first


def run_throughput(
    engine: Engine, spec: ModelSpec, *, prompt_tokens: int, gen_tokens: int, repeats: int, tick: Callable[[], None]
) -> list[ThroughputRow]:
    prompt = random_prompt(engine, prompt_tokens)
    engine.time_prompt(prompt)  # warm-up: page in the weights, size the buffers
    pp = []
    for _ in range(repeats):
        pp.append(prompt_tokens / engine.time_prompt(prompt))
        tick()
    tg = []
    one = random_prompt(engine, 1, seed=1)
    time_generation(engine, one, 1, min(gen_tokens, 16))  # warm-up
    for r in range(repeats):
        start = time.perf_counter()
        for _ in engine.generate(one, Sampling(k=1, max_tokens=gen_tokens, temperature=0.0), [r], ignore_eos=True):
            pass
        tg.append(gen_tokens / (time.perf_counter() - start))
        tick()
    common = dict(model=spec.name, title=spec.title, nbytes=engine.model_nbytes, params_billions=spec.params_billions,
                  backend=backend_name(), n_gpu_layers=engine.n_gpu_layers, threads=engine.n_threads)  # fmt: skip
    return [
        ThroughputRow(**common, test=f"pp{prompt_tokens}", tokens_per_s=Stat.of(pp), runs=pp),  # type: ignore[arg-type]
        ThroughputRow(**common, test=f"tg{gen_tokens}", tokens_per_s=Stat.of(tg), runs=tg),  # type: ignore[arg-type]
    ]


def run_scaling(
    engine: Engine, spec: ModelSpec, *, ks: list[int], prompt_tokens: int, gen_tokens: int, repeats: int,
    tick: Callable[[], None],
) -> Iterator[ScalingRow]:  # fmt: skip
    prompt = random_prompt(engine, prompt_tokens)
    time_generation(engine, prompt, max(ks), min(gen_tokens, 8))  # warm-up at the largest batch
    for k in ks:
        pp, tg = [], []
        for r in range(repeats):
            p, g = time_generation(engine, prompt, k, gen_tokens, seed=r)
            pp.append(p)
            tg.append(g)
            tick()
        # the first step also sampled one token per sequence: N - 1 decode steps follow it
        generated = [k * (gen_tokens - 1) / g for g in tg]
        total = [(prompt_tokens + k * gen_tokens) / (p + g) for p, g in zip(pp, tg, strict=True)]
        yield ScalingRow(
            spec.name, k, prompt_tokens, gen_tokens, Stat.of(pp), Stat.of(tg), Stat.of(generated), Stat.of(total)
        )


def measure_models(
    models: list[tuple[ModelSpec, Path]], *, ks: list[int], prompt_tokens: int, gen_tokens: int, repeats: int,
    n_gpu_layers: int, n_threads: int | None, tick: Callable[[], None],
) -> tuple[list[ThroughputRow], list[ScalingRow]]:  # fmt: skip
    """pp/tg rows and (for ``ks``) k-scaling rows, one model loaded at a time."""
    from ..engine.engine import Engine

    rows: list[ThroughputRow] = []
    scaling: list[ScalingRow] = []
    for spec, path in models:
        n_ctx = prompt_tokens + max([1, *ks]) * gen_tokens + 8
        with Engine(path, n_ctx=n_ctx, n_seq_max=max([1, *ks]), n_gpu_layers=n_gpu_layers, n_threads=n_threads,
                    expected_nbytes=spec.file_nbytes) as engine:  # fmt: skip
            rows += run_throughput(
                engine, spec, prompt_tokens=prompt_tokens, gen_tokens=gen_tokens, repeats=repeats, tick=tick
            )
            if ks:
                scaling += run_scaling(engine, spec, ks=ks, prompt_tokens=prompt_tokens, gen_tokens=gen_tokens,
                                       repeats=repeats, tick=tick)  # fmt: skip
    return rows, scaling


def hardware() -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            cpu = (
                subprocess.run(
                    ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
                ).stdout.strip()
                or cpu
            )
        except (OSError, subprocess.SubprocessError):
            pass
    gpu = None
    if shutil.which("nvidia-smi"):
        try:
            gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10).stdout.strip() or None  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            gpu = None
    elif sys.platform == "darwin" and platform.machine() == "arm64":
        gpu = "Apple silicon GPU (Metal)"
    from ..engine.llama import system_info

    return {
        "cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
        "backend": backend_name(), "gpu": gpu, **system_info(),
    }  # fmt: skip


def run_ensemble(mux: object, questions: int, tick: Callable[[], None]) -> EnsembleRow:
    """A profile answering the fixed questions (models preloaded first, so load time is not counted)."""
    from ..schedule.runtime import Mux

    assert isinstance(mux, Mux)
    for _ in mux.preload():
        pass
    tokens, seconds = 0, 0.0
    for i, question in enumerate(QUESTIONS[:questions]):
        start = time.perf_counter()
        result = mux.ask(question, sampling=dataclasses.replace(mux.profile.sampling, seed=i))
        seconds += time.perf_counter() - start
        tokens += result.tokens
        tick()
    n = min(questions, len(QUESTIONS))
    return EnsembleRow(
        mux.profile.name,
        mux.profile.member_names,
        mux.profile.sampling.k,
        n,
        60 * n / seconds,
        tokens / n,
        seconds / n,
        osmemory.peak_rss_bytes(),
    )
