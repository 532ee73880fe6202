"""Command-line subcommands, one module each; `bridge.cli` dispatches to them."""
