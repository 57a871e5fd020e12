"""Helpers the tests share: fake flash-attn wheels, fingerprints of this interpreter."""
