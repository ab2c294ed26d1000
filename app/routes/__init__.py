"""HTTP routes: thin wrappers that validate, call an operation off the event loop, and shape the reply."""
