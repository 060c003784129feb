"""Model/dataset cards and uploads to the Hugging Face Hub."""

__all__: list[str] = []
