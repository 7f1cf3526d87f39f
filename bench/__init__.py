"""Ripple's benchmark: ``python -m bench run`` drives a local stack over HTTP and writes
``bench/report.md`` with latency, throughput, fan-out, read, cold-start and cost figures.

Every figure is measured in one run against one local stack (DynamoDB Local by default, moto,
Redis, the stream runners), and is reported as a median / p99 and as a ratio to a ceiling
measured in the same run, because the 2-core machine is shared and absolute numbers drift
between runs.
"""

__all__ = ["FIGURES"]

# The report's figure headings, in order; the smoke test checks every one is present.
FIGURES: tuple[str, ...] = (
    "Figure 1 - Convergence window",
    "Figure 2 - Write path",
    "Figure 3 - Fan-out throughput",
    "Figure 4 - Cached feed reads",
    "Figure 5 - Cold start",
    "Figure 6 - Cost on AWS (on paper)",
    "Figure 7 - Emulator: a Query and a post transaction at 10x the data",
)
