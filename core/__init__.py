"""The helpdesk domain: models, intake, classification, threading, processes.

Nothing in here speaks IMAP, SMTP or HTTP: the mail gateway and the web console
call into these services, never the other way round.
"""
