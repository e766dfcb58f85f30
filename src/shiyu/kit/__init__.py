"""Generic building blocks with no knowledge of the domain."""
