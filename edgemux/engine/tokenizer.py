"""A model's own text side: its vocabulary, tokenizer and chat template (llama.cpp's, rendered with Jinja
as transformers does). An Engine has one for its loaded model; ``Tokenizer.open`` loads the vocabulary
alone (a fraction of a second, no weights), so a prompt too long for the context is refused before a
model is loaded for it."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..catalog.gguf import check_file
from ..errors import EngineError, InvalidRequestError
from .llama import Jinja2ChatFormatter, llama_cpp

__all__ = ["Tokenizer"]


class Tokenizer:
    """Text in and out of one loaded llama.cpp model (``model``: its pointer; ``name``: for messages)."""

    def __init__(self, model: ctypes.c_void_p, name: str) -> None:
        self.name = name
        self._model = model
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        self._chat_formatter = self._make_chat_formatter()

    @classmethod
    @contextmanager
    def open(cls, path: Path, expected_nbytes: int | None = None) -> Iterator[Tokenizer]:
        """The tokenizer of the GGUF at ``path``, its vocabulary loaded alone, freed on exit."""
        check_file(path, expected_nbytes)
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not model:
            raise EngineError(f"llama.cpp could not read the vocabulary of {path}; run with -v to see why")
        try:
            yield cls(model, path.name)
        finally:
            llama_cpp.llama_model_free(model)

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return str(llama_cpp.llama_vocab_get_text(self._vocab, token).decode("utf-8", errors="replace"))

    def _make_chat_formatter(self) -> Jinja2ChatFormatter | None:
        template = llama_cpp.llama_model_chat_template(self._model, None)
        if not template:
            return None
        return Jinja2ChatFormatter(
            template=template.decode("utf-8"),
            eos_token=self._token_text(llama_cpp.llama_vocab_eos(self._vocab)),
            bos_token=self._token_text(llama_cpp.llama_vocab_bos(self._vocab)),
        )

    @property
    def has_chat_template(self) -> bool:
        return self._chat_formatter is not None

    def render_chat(self, messages: Sequence[tuple[str, str]]) -> str:
        """Apply the GGUF's own chat template."""
        if self._chat_formatter is None:
            raise InvalidRequestError(f"{self.name} has no chat template; give it prompt_style: completion")
        chat: list[Any] = [{"role": r, "content": c} for r, c in messages]
        rendered = self._chat_formatter(messages=chat)
        return rendered.prompt

    def tokenize(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        bos = self._token_text(llama_cpp.llama_vocab_bos(self._vocab))
        # Templates often write the BOS token themselves; adding it again would double it.
        add_special = not (bos and text.startswith(bos))
        capacity = len(data) + 16
        buf = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buf, capacity, add_special, True)
        if n < 0:
            capacity = -n
            buf = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buf, capacity, add_special, True)
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        """The bytes of one token as generated text."""
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, 64, 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, -n, 0, False)
        return buf.raw[:n]
