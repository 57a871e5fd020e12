from pathlib import Path

import pytest

from f5_worker.errors import ConfigError
from f5_worker.settings import RUNPOD_VOLUME, UPSTREAM_RELEASES_URL, Settings


def test_defaults_without_environment():
    settings = Settings.from_env({})
    assert settings.flash_attn == "auto" and settings.flash_attn_version == "auto"
    assert settings.flash_attn_upstream == UPSTREAM_RELEASES_URL and not settings.allow_http
    assert settings.volume == RUNPOD_VOLUME or settings.volume.name == "f5-worker-volume"


def test_environment_is_read_with_one_prefix():
    pin = "a" * 64
    settings = Settings.from_env({
        "F5_WORKER_VOLUME": "/data/vol",
        "F5_WORKER_FLASH_ATTN": "REQUIRE",
        "F5_WORKER_FLASH_ATTN_VERSION": ">=2.7,<2.9",
        "F5_WORKER_FLASH_ATTN_MIRRORS": "/opt/wheels, https://wheels.example/simple/",
        "F5_WORKER_FLASH_ATTN_SHA256": f"flash_attn-2.8.3+cu12torch2.8cxx11abiTRUE-cp312-cp312-linux_x86_64.whl={pin}",
        "F5_WORKER_ALLOW_HTTP": "true",
        "F5_WORKER_DOWNLOAD_TIMEOUT": "12.5",
        "FLASH_ATTN": "ignored: no prefix",
    })
    assert settings.volume == Path("/data/vol") and settings.root == Path("/data/vol/f5-worker")
    assert settings.flash_attn == "require" and settings.flash_attn_version == ">=2.7,<2.9"
    assert settings.flash_attn_mirrors == ("/opt/wheels", "https://wheels.example/simple/")
    assert list(settings.flash_attn_sha256.values()) == [pin]
    assert settings.allow_http and settings.download_timeout_s == 12.5


def test_explicit_arguments_win_over_environment():
    assert Settings.from_env({"F5_WORKER_FLASH_ATTN": "off"}, flash_attn="auto").flash_attn == "auto"


@pytest.mark.parametrize("env, message", [
    ({"F5_WORKER_FLASH_ATTN": "maybe"}, "F5_WORKER_FLASH_ATTN='maybe' is not one of off, auto, require"),
    ({"F5_WORKER_ALLOW_HTTP": "sometimes"}, "is not a boolean"),
    ({"F5_WORKER_DOWNLOAD_TIMEOUT": "-1"}, "must be greater than 0"),
    ({"F5_WORKER_DOWNLOAD_RETRIES": "x"}, "is not an integer"),
    ({"F5_WORKER_FLASH_ATTN_SHA256": "name=abc"}, "FILENAME=SHA256"),
])
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        Settings.from_env(env)


def test_model_settings():
    settings = Settings.from_env({"F5_WORKER_VOLUME": "/v", "F5_WORKER_MODEL": "E2TTS_Base",
                                  "F5_WORKER_LEGACY_MODEL_DIRS": "/baked, ~/old", "HF_HUB_OFFLINE": "1"})
    assert settings.model == "E2TTS_Base" and settings.offline
    assert settings.hub_cache == Path("/v/huggingface-cache/hub")
    assert settings.legacy_model_dirs == (Path("/baked"), Path("~/old"))
    assert Settings.from_env({"F5_WORKER_HF_CACHE": "/c"}).hub_cache == Path("/c")


def test_batching_settings_default_to_auto_and_accept_numbers():
    assert (Settings.from_env({}).concurrency, Settings.from_env({}).max_batch) == (0, 0)  # 0: auto
    settings = Settings.from_env({"F5_WORKER_CONCURRENCY": "auto", "F5_WORKER_MAX_BATCH": "16",
                                  "F5_WORKER_BATCH_WINDOW_MS": "2.5"})
    assert (settings.concurrency, settings.max_batch, settings.batch_window_ms) == (0, 16, 2.5)
    with pytest.raises(ConfigError, match="F5_WORKER_BATCH_WINDOW_MS=5000"):
        Settings.from_env({"F5_WORKER_BATCH_WINDOW_MS": "5000"})
    with pytest.raises(ConfigError, match="F5_WORKER_MAX_BATCH='many' is not an integer"):
        Settings.from_env({"F5_WORKER_MAX_BATCH": "many"})
