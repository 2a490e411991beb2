"""Issuance: personalization plans, single and batch issuance, resume (issue 6)."""
