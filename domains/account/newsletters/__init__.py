"""Newsletters (issue 15 items 3-5), part of the account domain, which owns members and their lists.

``models``    lists, subscriptions, campaigns, recipients
``schemas``   form inputs, the CSV import report, the Ghost member shapes (Structs)
``services``  the rules: subscribing (double opt-in), unsubscribe tokens, imports, campaigns
``jobs``      ``newsletter.send-batch``: one durable job per recipient batch
``controllers``/``admin``  public and member pages; authors' campaigns; administrators' lists
"""
