"""Benchmarks and toy training runs, the measurements behind docs/benchmarks.md. Each runs from the repository
root as `python -m benchmarks.<name>`; they may use anything, test fakes included, and nothing imports them."""
