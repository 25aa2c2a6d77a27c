"""Gifts / red packets (R-GIFT-1): a sender moves an amount into the operator's gift escrow
and shares a claim code; claimers take the fixed shares one each; what is left after the gift's
time goes back to the sender (the worker's sweep)."""
