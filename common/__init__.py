"""What every room may import: the error family's base. Nothing heavy lives here."""
