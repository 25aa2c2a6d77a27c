"""Proof of reserves (SPEC §11): snapshots, the strongroom-por-v1 Merkle sum tree, its tree file,
user proofs and the published audits."""
