"""Find markdown files under a root and split them into heading-aware sections."""
