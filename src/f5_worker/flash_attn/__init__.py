"""Prebuilt flash-attn for whatever runtime the worker lands on: resolve, fetch once, verify, activate.

Not to be confused with the ``flash_attn`` package itself, which this never imports
in the worker's own process until it has passed ``verify`` in a child.
"""
