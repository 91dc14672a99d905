"""StreamDx common library: message schemas, messaging layer, state store, settings, CLI."""
