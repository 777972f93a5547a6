"""What the central system knows, whatever the protocol: the live site state and its events, who may charge,
and the version-agnostic commands a station link takes (the port the delivery drives)."""
