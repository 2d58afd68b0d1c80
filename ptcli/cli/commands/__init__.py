"""The core's commands, one module each; ptcli.plugins.CORE_COMMANDS names them (the CLI
registers them from that table, and the plugin manager reserves their names)."""
