"""Host side effects and probes, each a small object with one real implementation.

Tests use the doubles in ``testing/fakes.py`` or run the real objects inside sandboxed
namespaces (``testing.sandbox``).
"""
