"""The refuge's shared library: event contracts, messaging glue, store and settings bases."""
