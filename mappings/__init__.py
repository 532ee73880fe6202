"""Pure mappings between outside formats and the canonical model (no I/O, no clock reads)."""
