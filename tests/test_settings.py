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


class TestReadmeTables:
    """README's configuration tables (## Configuration, ## Model cache) and ``settings.VARIABLES`` are one list."""

    @staticmethod
    def readme_rows() -> dict[str, str]:
        import re

        text = (Path(__file__).parents[1] / "README.md").read_text()
        rows: dict[str, str] = {}
        for section in ("## Configuration", "## Model cache"):
            body = text.split(section + "\n", 1)[1].split("\n## ", 1)[0]
            for line in body.splitlines():
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                names = re.findall(r"`((?:F5_WORKER|BUCKET)_[A-Z0-9_]+)`", cells[0]) if len(cells) >= 3 else []
                for name in names:
                    assert name not in rows, f"{name} is listed twice in README.md"
                    rows[name] = cells[1]
        return rows

    def test_every_variable_is_in_the_readme_with_its_default(self):
        from f5_worker.settings import VARIABLES

        rows = self.readme_rows()
        assert set(rows) == {v.name for v in VARIABLES}, "README.md's tables and settings.VARIABLES differ"
        for variable in VARIABLES:
            assert rows[variable.name] == variable.readme_default, variable.name

    def test_a_default_the_readme_shows_is_the_default_in_force(self, tmp_path):
        from f5_worker.settings import VARIABLES

        settings = Settings(volume=tmp_path)
        checked = 0
        for variable in VARIABLES:
            shown = variable.readme_default
            if shown == "none" or shown == "(the model's)":
                assert getattr(settings, variable.field) in (None, (), {}), variable.name
            elif shown.count("`") == 2 and shown.startswith("`") and "<" not in shown:
                parsed = variable.parse(variable.name, shown.strip("`"))
                assert parsed == getattr(settings, variable.field), variable.name
                checked += 1
        assert checked >= 20

    def test_settings_name_their_variable(self):
        from f5_worker.settings import env_name

        assert env_name("max_ref_seconds") == "F5_WORKER_MAX_REF_SECONDS"
        assert env_name("bucket_endpoint_url") == "BUCKET_ENDPOINT_URL"


def test_serving_settings():
    settings = Settings.from_env({"F5_WORKER_ASR_MODEL": "off", "F5_WORKER_ASR_PRELOAD": "true",
                                  "F5_WORKER_DEFAULT_VOICE": "narrator", "BUCKET_ENDPOINT_URL": "https://b.example",
                                  "BUCKET_ACCESS_KEY_ID": "id", "BUCKET_SECRET_ACCESS_KEY": "secret"})
    assert (settings.asr_model, settings.asr_preload, settings.default_voice) == ("off", True, "narrator")
    assert settings.bucket and "secret" not in repr(settings)
    assert Settings.from_env({}).asr_model == "openai/whisper-large-v3-turbo"
    with pytest.raises(ConfigError, match="F5_WORKER_MAX_REF_BYTES='0' must be greater than 0"):
        Settings.from_env({"F5_WORKER_MAX_REF_BYTES": "0"})
