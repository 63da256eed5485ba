"""Answering a question: which models stay resident within the budget, loading them, interleaving their
decoding, and the runtime (``Mux``) that ties it together."""
