import zipfile

from f5_worker.models.integrity import check_format, digest_kind, file_digest, verify

from .conftest import safetensors_bytes, sha256


def test_git_blob_sha1_is_what_git_hash_object_prints(tmp_path):
    (tmp_path / "hello").write_bytes(b"hello\n")
    # `echo hello | git hash-object --stdin`
    assert file_digest(tmp_path / "hello", "git-sha1") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_digest_kind_from_blob_names():
    assert digest_kind("a" * 64) == "sha256"
    assert digest_kind("a" * 40) == "git-sha1"
    assert digest_kind("model_1250000.safetensors") is None


class TestSafetensors:
    def test_whole_file_passes(self, tmp_path):
        (tmp_path / "m.safetensors").write_bytes(safetensors_bytes())
        assert check_format(tmp_path / "m.safetensors", "m.safetensors") is None

    def test_truncated_file_is_caught_without_a_hash(self, tmp_path):
        (tmp_path / "m.safetensors").write_bytes(safetensors_bytes()[:-10])
        assert "truncated" in check_format(tmp_path / "m.safetensors", "m.safetensors")

    def test_garbage_header(self, tmp_path):
        (tmp_path / "m.safetensors").write_bytes(b"<html>rate limited</html>")
        assert "does not fit" in check_format(tmp_path / "m.safetensors", "m.safetensors")


def test_truncated_zip_torch_file(tmp_path):
    with zipfile.ZipFile(tmp_path / "w.bin", "w") as z:
        z.writestr("archive/data.pkl", b"x" * 1000)
    data = (tmp_path / "w.bin").read_bytes()
    assert check_format(tmp_path / "w.bin", "pytorch_model.bin") is None
    (tmp_path / "w.bin").write_bytes(data[:-30])
    assert "BadZipFile" in check_format(tmp_path / "w.bin", "pytorch_model.bin")


class TestVerify:
    def test_hash_then_stamp_then_hash_again_when_the_blob_changes(self, tmp_path):
        blob = tmp_path / "blob"
        blob.write_bytes(safetensors_bytes())
        name, stamps = sha256(blob), tmp_path / "verified"
        assert verify(blob, "m.safetensors", name, stamps).how == "sha256"
        assert verify(blob, "m.safetensors", name, stamps).how == "stamp"
        data = bytearray(blob.read_bytes())
        data[-1] ^= 0xFF  # same size, one bit of rot in the tensor data: only the hash sees it
        blob.write_bytes(bytes(data))
        result = verify(blob, "m.safetensors", name, stamps)
        assert not result.ok and result.how == "sha256" and name in result.reason

    def test_dangling_pointer(self, tmp_path):
        (tmp_path / "p").symlink_to(tmp_path / "gone")
        assert not verify(tmp_path / "p", "vocab.txt").ok
