"""The events services: occurrences (recurrence.py) and the event rules (events.py)."""
