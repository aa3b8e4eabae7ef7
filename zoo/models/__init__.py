"""One module per model family. The builders are also exported as ``zoo.<name>``."""
