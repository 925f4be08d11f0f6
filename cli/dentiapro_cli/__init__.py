"""``dentiapro``: the operator's command (``dentiapro --help``)."""
