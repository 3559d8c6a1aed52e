"""File formats for file drops: streaming readers and writers, and the per-file result spool."""
