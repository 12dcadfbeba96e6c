"""Access control: API keys with roles, the rate limiter, and the middleware that applies both."""
