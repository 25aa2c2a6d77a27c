"""Verification is pluggable (R-KYC-5): a ``VerificationProvider`` looks at a new submission
and answers approve, reject (with a reason) or leave it to an operator. The built-in provider
is manual review: it always leaves it to an operator, whose decision goes through the same
``service.approve`` / ``service.reject`` as a provider's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

from strongroom.kyc.models import APPROVED, PENDING, REJECTED, Submission


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str
    reason: str | None = None


LEAVE_TO_OPERATOR: Final = Verdict(PENDING)


def approve() -> Verdict:
    return Verdict(APPROVED)


def reject(reason: str) -> Verdict:
    return Verdict(REJECTED, reason)


class VerificationProvider(Protocol):
    """``name`` is stored with each submission; ``assess`` runs in the submitting request's
    transaction, after the documents are stored, and must not commit."""

    @property
    def name(self) -> str: ...

    def assess(self, submission: Submission) -> Verdict: ...


class ManualReview:
    """Every submission waits in the review queue for an operator (``kyc_reviewer``, ``admin``)."""

    name: Final = "manual"

    def assess(self, submission: Submission) -> Verdict:
        return LEAVE_TO_OPERATOR


MANUAL: Final = ManualReview()
