"""What goes on a wire, and nothing else: the Notification JSON (and the SQL that writes
the same text), the bus's announcements, the WebSocket frames. Pure encoders and
decoders, each tested byte for byte; no I/O."""
