"""Which attention kernel runs which kind of batch: the one value the bootstrap hands the engine.

Unmasked attention (requests of one length) and masked attention (requests of different
lengths in one batch) rank differently on the same GPU: on Hopper SDPA beats
``flash_attn_func`` unmasked, while ``flash_attn_varlen_func`` beats masked SDPA 13x
(shared GPU notes). So each kind is decided apart, by the timings taken when the wheel
was verified, and the engine can switch to a new choice between batches.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

__all__ = ["AttentionChoice", "Backend", "SDPA", "FLASH_ATTN", "FA4"]

Backend = Literal["sdpa", "flash_attn", "fa4"]
SDPA: Backend = "sdpa"
FLASH_ATTN: Backend = "flash_attn"
FA4: Backend = "fa4"  # FlashAttention-4 (flash-attn-4): unmasked batches only (``f5_worker.fa4``)


@dataclass(frozen=True)
class AttentionChoice:
    single: Backend  # requests of one length, no mask
    batch: Backend  # requests of different lengths, masked
    single_why: str
    batch_why: str

    @classmethod
    def sdpa(cls, why: str) -> AttentionChoice:
        return cls(SDPA, SDPA, why, why)

    @classmethod
    def from_timings(cls, timings_ms: dict | None) -> AttentionChoice:
        """The faster verified kernel for each kind of batch, by the timings taken at verification
        (flash-attn for both when it was verified where nothing could be timed, e.g. on a CPU)."""
        if not timings_ms:
            why = "verified; no GPU timings to compare"
            return cls(FLASH_ATTN, FLASH_ATTN, why, why)
        fa, sdpa = timings_ms["dense_flash_attn"], timings_ms["dense_sdpa"]
        varlen, masked = timings_ms["varlen_flash_attn"], timings_ms["masked_sdpa"]
        return cls(
            FLASH_ATTN if fa < sdpa else SDPA,
            FLASH_ATTN if varlen < masked else SDPA,
            f"dense attention: flash_attn {fa:.3f} ms vs SDPA {sdpa:.3f} ms",
            f"mixed-length batch: varlen flash_attn {varlen:.3f} ms vs masked SDPA {masked:.3f} ms",
        )

    @classmethod
    def from_json(cls, data: dict) -> AttentionChoice:
        return cls(data["single"], data["batch"], data["single_why"], data["batch_why"])

    @property
    def uses_flash_attn(self) -> bool:
        return FLASH_ATTN in (self.single, self.batch)

    def to_json(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"single: {self.single} ({self.single_why}); batch: {self.batch} ({self.batch_why})"
