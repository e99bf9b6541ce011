"""Typed JSON outputs: one dataclass per file, used by the stage that writes it and by every reader."""
