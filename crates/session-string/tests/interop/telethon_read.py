"""Loads each string given on the command line with Telethon's own StringSession (offline: no
client, no connection) and prints one JSON object per string with what Telethon read."""
import json
import sys

from telethon.sessions import StringSession

for text in sys.argv[1:]:
    session = StringSession(text)
    key = session.auth_key.key if session.auth_key else None
    print(json.dumps({
        "dc": session.dc_id,
        "address": session.server_address,
        "port": session.port,
        "auth_key_hex": key.hex() if key else None,
    }))
