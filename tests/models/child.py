"""Run the model step in a fresh process, as a worker start does: ``child.py CONFIG.json`` prints a JSON result.

huggingface_hub reads HF_* at import, so each scenario needs its own process.
"""

import json
import os
import sys
from pathlib import Path

from f5_worker.models import ModelsConfig, ensure_models, plan

cfg = json.loads(Path(sys.argv[1]).read_text())
paths = lambda key: tuple(Path(p) for p in cfg.get(key, ()))  # noqa: E731
report = ensure_models(
    ModelsConfig(
        cache_dir=Path(cfg["cache_dir"]),
        work_dir=Path(cfg["work_dir"]),
        files=plan(cfg.get("model", "F5TTS_v1_Base"), cfg.get("ckpt"), cfg.get("vocab")),
        read_caches=paths("read_caches"),
        legacy_dirs=paths("legacy_dirs"),
        fallback_cache_dir=Path(cfg["fallback"]) if cfg.get("fallback") else None,
        offline=cfg.get("offline", False),
        etag_timeout_s=3,
        download_timeout_s=5,
    )
)
out = {
    "report": report.to_json(),
    "hf_hub_offline": os.environ.get("HF_HUB_OFFLINE"),
    "hf_hub_cache": os.environ.get("HF_HUB_CACHE"),
    "hub_imported": "huggingface_hub" in sys.modules,
}
if cfg.get("ask_hub_lib") and report.ok:
    # Another tool reading the same cache, offline, through the standard API.
    from huggingface_hub import hf_hub_download

    out["hub_lib"] = {f.ref: hf_hub_download(f.repo_id, f.filename) for f in plan() if hasattr(f, "repo_id")}
print(json.dumps(out))
