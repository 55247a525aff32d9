"""Real components for tests and the local stack: Redis, an SMTP sink, the services as processes."""
