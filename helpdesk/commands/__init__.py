"""The `helpdesk` subcommands, grouped by what they work on; `helpdesk.cli` wires them into the parser."""
