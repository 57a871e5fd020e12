import pytest

from f5_worker.flash_attn.wheelname import FlashAttnWheel, NotAFlashAttnWheel, cuda_major_of_label

REAL_NAMES = [
    "flash_attn-2.5.0+cu122torch2.1cxx11abiFALSE-cp310-cp310-linux_x86_64.whl",
    "flash_attn-2.6.3+cu123torch2.4cxx11abiTRUE-cp311-cp311-linux_x86_64.whl",
    "flash_attn-2.7.4.post1+cu12torch2.6cxx11abiFALSE-cp311-cp311-linux_x86_64.whl",
    "flash_attn-2.8.3+cu13torch2.10cxx11abiTRUE-cp312-cp312-linux_aarch64.whl",
]


class TestParse:
    @pytest.mark.parametrize("name", REAL_NAMES)
    def test_round_trip(self, name):
        assert FlashAttnWheel.parse(name).filename == name

    def test_fields(self):
        wheel = FlashAttnWheel.parse("flash_attn-2.6.3+cu123torch2.4cxx11abiTRUE-cp311-cp311-linux_x86_64.whl")
        assert (wheel.version, wheel.cuda_label, wheel.cuda_major, wheel.torch, wheel.cxx11abi, wheel.python_tag, wheel.platform) == (
            "2.6.3", "123", 12, "2.4", True, "cp311", "linux_x86_64")

    @pytest.mark.parametrize("name, why", [
        ("flash_attn-2.8.3.post2-cp312-cp312-linux_x86_64.whl", "no '+cuXXtorchX.Ycxx11abiX' label"),
        ("flash_attn-2.8.3+rocm62torch2.6cxx11abiTRUE-cp312-cp312-linux_x86_64.whl", "is not cuXXtorch"),
        ("torch-2.8.0+cu128-cp312-cp312-linux_x86_64.whl", "project is 'torch'"),
        ("flash_attn-2.8.3.tar.gz", "not an upstream-style"),
    ])
    def test_rejects_with_reason(self, name, why):
        with pytest.raises(NotAFlashAttnWheel, match=why.replace("+", r"\+").replace("(", r"\(")):
            FlashAttnWheel.parse(name)


@pytest.mark.parametrize("label, major", [("118", 11), ("122", 12), ("123", 12), ("11", 11), ("12", 12), ("13", 13)])
def test_cuda_major_of_label(label, major):
    assert cuda_major_of_label(label) == major
