"""Pure code: no sockets, no files, no tornado, no paho. Everything here is testable by calling it."""
