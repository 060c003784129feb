"""Feature sets and length-bucketed batches read from the speech corpus."""

__all__: list[str] = []
