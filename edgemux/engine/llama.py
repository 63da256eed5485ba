"""The one place llama.cpp is imported and set up: its log routed to Python logging (shown with -v) and
its backend initialised, once, before any model (or vocabulary) is loaded. ``engine`` and ``tokenizer``
take ``llama_cpp`` from here."""

from __future__ import annotations

import ctypes
import logging
import os
from typing import Any

import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

__all__ = ["Jinja2ChatFormatter", "default_threads", "library_llama", "llama_cpp", "model_params", "system_info"]

_llama_log = logging.getLogger("edgemux.llama")
if _llama_log.level == logging.NOTSET:  # llama.cpp warns about quirks of valid models; quiet unless asked
    _llama_log.setLevel(logging.ERROR)
# ggml.h: NONE=0, DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5 (llama-cpp-python's own table is out of date).
_LOG_LEVELS = {0: logging.CRITICAL, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_last_level = logging.DEBUG


@llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
def _forward_llama_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    # llama.cpp is chatty on stderr; route it to logging (shown with -v) instead. Level 5 continues a line.
    global _last_level
    py_level = _last_level if level == 5 else _LOG_LEVELS.get(level, logging.DEBUG)
    _last_level = py_level
    if _llama_log.isEnabledFor(py_level):
        _llama_log.log(py_level, text.decode("utf-8", errors="replace").rstrip("\n"))


llama_cpp.llama_log_set(_forward_llama_log, ctypes.c_void_p(0))
llama_cpp.llama_backend_init()


def system_info() -> dict[str, object]:
    """What llama.cpp was built with and can use here (for benchmark reports)."""
    return {
        "llama_cpp_python": getattr(llama_cpp, "__version__", "unknown"),
        "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
        "system_info": llama_cpp.llama_print_system_info().decode("utf-8", errors="replace").strip(),
    }


def default_threads() -> int:
    """Decode is compute-bound on CPUs: one thread per core, capped where more stop helping."""
    return max(1, min(os.cpu_count() or 1, 8))


def _runs_amx_kernels() -> bool:
    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


def model_params(n_gpu_layers: int = 0) -> Any:
    """llama.cpp's model parameters as edgemux loads every model.

    On CPUs with AMX (Intel Sapphire Rapids and later) a build compiled for the host repacks the weights
    into an AMX buffer whose matmul crashes the process on the first batched decode (llama.cpp #20824,
    closed without a fix; reproduced on this project's 2-core Xeon with SmolLM2-135M). There the extra
    CPU buffer types are turned off: weights stay in plain CPU memory, slower to decode than repacked
    but correct.
    """
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = n_gpu_layers
    if _runs_amx_kernels():
        params.use_extra_bufts = False
    return params


def library_llama(model_path: str, **kwargs: Any) -> Any:
    """llama-cpp-python's own ``Llama`` (for comparisons and tests against the library), loaded with the
    model parameters edgemux uses: with llama.cpp's defaults it crashes on AMX CPUs (see model_params).
    ``Llama`` reads the defaults from llama.cpp's bindings and takes no parameters object, so they are
    swapped for the duration of the load."""
    import llama_cpp.llama_cpp as bindings

    params, defaults = model_params(), bindings.llama_model_default_params
    bindings.llama_model_default_params = lambda: params
    try:
        return llama_cpp.Llama(model_path, **kwargs)
    finally:
        bindings.llama_model_default_params = defaults
