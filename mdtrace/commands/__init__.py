"""One module per CLI subcommand; each exports `command`."""
