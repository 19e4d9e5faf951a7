"""The orders domain: validation, pricing and storage."""
