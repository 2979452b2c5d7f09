"""Optional structured evidence: read-only SQL over the tables in a corpus."""
