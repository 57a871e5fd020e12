"""Serving one synthesis request: its schema, its reference audio (fetched safely, decoded, clipped,
cached) and its encoded output. The engine and the RunPod handler build on these parts."""
