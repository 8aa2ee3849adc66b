"""The HTTP proxy front end."""
