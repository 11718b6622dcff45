"""Opens a session file with the real Pyrogram, pyrofork or kurigram (whichever this interpreter
has) and prints what it reads, as JSON.

Usage: read_pyrogram.py <dir> <name> [marked peer id ...]   (the file is <dir>/<name>.session)
"""
import asyncio
import json
import logging
import sys
from pathlib import Path

logging.disable(logging.CRITICAL)

import pyrogram  # noqa: E402
from pyrogram.raw import types  # noqa: E402

try:
    from pyrogram.storage import FileStorage

    def make(workdir, name):
        return FileStorage(name, workdir)
except ImportError:  # kurigram has only SQLiteStorage
    from pyrogram.storage import SQLiteStorage

    def make(workdir, name):
        return SQLiteStorage(name, workdir)


async def main():
    workdir, name = Path(sys.argv[1]), sys.argv[2]
    storage = make(workdir, name)
    await storage.open()
    key = await storage.auth_key()
    out = {
        "library_version": pyrogram.__version__,
        "dc_id": await storage.dc_id(),
        "api_id": await storage.api_id(),
        "test_mode": bool(await storage.test_mode()),
        "auth_key": key.hex() if key else None,
        "user_id": await storage.user_id(),
        "is_bot": None if await storage.is_bot() is None else bool(await storage.is_bot()),
        "version": await storage.version() if asyncio.iscoroutinefunction(storage.version) else storage.version(),
    }
    if hasattr(storage, "server_address"):
        out["server_address"] = await storage.server_address()
        out["port"] = await storage.port()
    peers = {}
    for arg in sys.argv[3:]:
        peer = await storage.get_peer_by_id(int(arg))
        if isinstance(peer, types.InputPeerUser):
            peers[arg] = {"kind": "user", "id": peer.user_id, "access_hash": peer.access_hash}
        elif isinstance(peer, types.InputPeerChat):
            peers[arg] = {"kind": "chat", "id": peer.chat_id, "access_hash": 0}
        elif isinstance(peer, types.InputPeerChannel):
            peers[arg] = {"kind": "channel", "id": peer.channel_id, "access_hash": peer.access_hash}
    out["peers"] = peers
    states = None
    if hasattr(storage, "get_update_states"):
        states = [[s.id, s.pts, s.qts, s.date, s.seq] for s in await storage.get_update_states()]
    elif hasattr(storage, "update_state"):
        states = [list(s) for s in await storage.update_state()]
    if states is not None:
        out["update_states"] = {str(s[0]): {"pts": s[1], "qts": s[2], "date": s[3], "seq": s[4]} for s in states}
    await storage.close()
    print(json.dumps(out))


asyncio.run(main())
