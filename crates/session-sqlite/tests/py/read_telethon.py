"""Opens a session file with the real Telethon and prints what it reads, as JSON.

Usage: read_telethon.py <file.session> [marked peer id ...]
"""
import json
import sys

from telethon.sessions import SQLiteSession
from telethon.tl import types


def main():
    path = sys.argv[1]
    session = SQLiteSession(path)
    out = {
        "dc_id": session.dc_id,
        "server_address": session.server_address,
        "port": session.port,
        "auth_key": session.auth_key.key.hex() if session.auth_key and session.auth_key.key else None,
    }
    # What TelegramClient.connect does to learn who is logged in (entity 0 holds the id).
    try:
        out["user_id"] = session.get_input_entity(0).access_hash
    except ValueError:
        out["user_id"] = None
    peers = {}
    for arg in sys.argv[2:]:
        peer = session.get_input_entity(int(arg))
        if isinstance(peer, types.InputPeerUser):
            peers[arg] = {"kind": "user", "id": peer.user_id, "access_hash": peer.access_hash}
        elif isinstance(peer, types.InputPeerChat):
            peers[arg] = {"kind": "chat", "id": peer.chat_id, "access_hash": 0}
        elif isinstance(peer, types.InputPeerChannel):
            peers[arg] = {"kind": "channel", "id": peer.channel_id, "access_hash": peer.access_hash}
    out["peers"] = peers
    states = {}
    for entity_id, state in session.get_update_states():
        states[str(entity_id)] = {
            "pts": state.pts,
            "qts": state.qts,
            "date": int(state.date.timestamp()),
            "seq": state.seq,
        }
    out["update_states"] = states
    session.close()
    print(json.dumps(out))


main()
