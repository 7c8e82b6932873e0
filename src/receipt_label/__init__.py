"""Labelling and embedding records for receipts."""
