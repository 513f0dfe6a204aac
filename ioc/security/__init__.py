"""Sign-in, roles and areas, and the audit log (docs/security.md)."""
