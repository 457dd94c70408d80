"""Host side effects and probes, each a small object with one real implementation.

Tests use the doubles in ``tests/fakes.py`` or run the real objects inside sandboxed
namespaces (``agent.sandbox``).
"""
