"""Notifications: the email outbox (R-MAIL-1), its template registry and SMTP delivery."""
