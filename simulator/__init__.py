"""Event-driven NPU simulator (pure Python; torch only in frontends)."""
