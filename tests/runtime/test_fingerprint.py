import json

import pytest

from f5_worker.errors import ConfigError
from f5_worker.runtime.fingerprint import Fingerprint

H100 = {"torch_version": "2.11.0+cu130", "torch_cuda": "13.0", "cxx11abi": True, "python": "3.12",
        "platform": "linux_x86_64", "glibc": "2.39", "compute_capability": "9.0", "driver": "580.159.04"}


class TestJson:
    def test_round_trip(self):
        fp = Fingerprint.from_json(H100)
        assert Fingerprint.from_json(json.loads(json.dumps(fp.to_json()))) == fp

    def test_cpu_only_runtime_is_a_normal_state(self):
        fp = Fingerprint.from_json({"python": "3.11", "platform": "linux_x86_64"})
        assert fp.torch_version is None and fp.compute_capability is None and fp.torch_cuda_major is None

    @pytest.mark.parametrize("data, message", [
        ({**H100, "cuda": "12"}, "unknown fingerprint field"),
        ({"platform": "linux_x86_64"}, "missing required field"),
        ({**H100, "torch_cuda": "twelve"}, "torch_cuda='twelve' is not a dotted version"),
        ({**H100, "python": "312"}, "python='312'"),
        ({**H100, "torch_version": "banana"}, "not a version"),
    ])
    def test_bad_json_names_the_field(self, data, message):
        with pytest.raises(ConfigError, match=message):
            Fingerprint.from_json(data)


class TestDerived:
    def test_tags(self):
        fp = Fingerprint.from_json(H100)
        assert (fp.python_tag, fp.torch_major_minor, fp.torch_cuda_major) == ("cp312", "2.11", 13)

    def test_runtime_key_is_readable_and_changes_with_what_matters(self):
        fp = Fingerprint.from_json(H100)
        assert fp.runtime_key().startswith("torch2.11.0-cu130-cp312-linux_x86_64-sm90-")
        assert Fingerprint.from_json({**H100, "compute_capability": "8.0"}).runtime_key() != fp.runtime_key()
        assert Fingerprint.from_json({**H100, "torch_version": "2.11.1+cu130"}).runtime_key() != fp.runtime_key()
        # Not part of the key: facts a warm start need not pay to learn, or that do not affect the binary.
        assert Fingerprint.from_json({**H100, "cxx11abi": None, "driver": "590.1"}).runtime_key() == fp.runtime_key()
