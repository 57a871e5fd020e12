"""RunPod Hub's expected entry point: the worker's own (`f5-worker runpod`): bootstrap, engine, handler."""

from f5_worker.cli import main

raise SystemExit(main(["runpod"]))
