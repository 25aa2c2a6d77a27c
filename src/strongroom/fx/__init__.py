"""FX (R-FX-1): operator rates per asset pair, short-lived quotes bound to a user, conversions
at a quote through the operator's FX accounts, and reference prices from the mid rates."""
