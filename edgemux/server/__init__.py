"""The OpenAI-compatible local server: the HTTP app, the wire format, the decode worker, exposure checks."""
