"""Git hooks run by ``git receive-pack`` through ``-c core.hooksPath`` (never copied into repositories)."""
