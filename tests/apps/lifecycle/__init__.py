"""Apps and config files of the lifecycle tests (signals, supervision, hooks, systemd)."""
