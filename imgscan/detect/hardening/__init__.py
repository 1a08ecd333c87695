"""detect/hardening."""
