"""Every use of llama.cpp (``llama.py`` is the one ``llama_cpp`` import): a loaded model's batched decoding,
its tokenizer and samplers, token logprobs, embeddings; and the remote engine that speaks to an
OpenAI-compatible server the same way."""
