"""How much memory a set of models needs (from GGUF headers) and how much the machine has."""
