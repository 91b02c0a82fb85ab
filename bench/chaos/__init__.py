"""The fault-injection harness: ``python -m bench.chaos`` (``make chaos``)."""
