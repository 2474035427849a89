"""Local HTTPS stand-in for Entra ID and the Graph synchronization API (see docs/sandbox.md)."""
