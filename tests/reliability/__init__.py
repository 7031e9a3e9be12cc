"""The reliability campaigns of issue 22: crashes and contention against a real server process
(docs/reliability.md)."""
