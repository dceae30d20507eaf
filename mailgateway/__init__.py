"""The edge to mail: IMAP watcher, parsing, SMTP sender. Knows protocols, not ITIL."""
