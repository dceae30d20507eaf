"""The helpdesk command: configuration and wiring of core, mail gateway and web console."""
