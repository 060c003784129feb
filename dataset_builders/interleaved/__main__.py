"""`python -m dataset_builders.interleaved ...` and `accelerate launch -m dataset_builders.interleaved ...`."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())

__all__: list[str] = []
