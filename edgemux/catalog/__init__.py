"""Models on disk and on the wire: manifests, the GGUF header, downloads with checksums (PyPI wheels, the
hub, local files), `models add`."""
