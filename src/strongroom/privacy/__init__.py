"""Personal data (issue #11 item 7): a user's data export and the erasure of their account.

The policy is written in ``service``'s docstring."""
