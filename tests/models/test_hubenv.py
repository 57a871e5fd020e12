import sys
from pathlib import Path

from f5_worker.models.hubenv import apply, hub_env


def test_hub_env_maps_settings_to_huggingface_hub_variables():
    assert hub_env(Path("/runpod-volume/huggingface-cache/hub"), etag_timeout_s=2.5, download_timeout_s=30.0,
                   offline=True) == {
        "HF_HUB_CACHE": "/runpod-volume/huggingface-cache/hub",
        "HF_HUB_ETAG_TIMEOUT": "2",  # parsed by huggingface_hub as an int
        "HF_HUB_DOWNLOAD_TIMEOUT": "30",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }


def test_apply_to_a_mapping_leaves_the_process_alone():
    env: dict[str, str] = {}
    assert apply({"HF_HUB_OFFLINE": "1"}, env) is None
    assert env == {"HF_HUB_OFFLINE": "1"}


def test_the_module_that_sets_the_environment_does_not_import_the_hub(tmp_path):
    import subprocess

    code = "import sys, f5_worker.models, f5_worker.models.hubenv; print('huggingface_hub' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
