"""KYC (SPEC R-KYC-1..5): submissions, their documents in the encrypted vault, the review
queue and the verification providers."""
