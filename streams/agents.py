"""Stream processors (filled in below)."""
