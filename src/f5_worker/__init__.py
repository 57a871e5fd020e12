"""f5-worker: a serverless GPU worker for F5-TTS that brings its own verified flash-attn."""

__version__ = "0.1.0"
