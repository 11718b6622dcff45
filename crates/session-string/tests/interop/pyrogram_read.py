"""Loads each string given on the command line with the installed Pyrogram-family library's own
in-memory storage (Pyrogram and pyrofork: MemoryStorage; kurigram: SQLiteStorage(in_memory=True)),
offline, and prints one JSON object per string with what the storage holds afterwards."""
import asyncio
import json
import sys
from pathlib import Path

import pyrogram.storage as storage


def open_storage(text):
    if hasattr(storage, "MemoryStorage"):
        return storage.MemoryStorage("interop", session_string=text)
    return storage.SQLiteStorage("interop", workdir=Path("."), session_string=text, in_memory=True)


async def read(text):
    st = open_storage(text)
    await st.open()
    out = {
        "dc": await st.dc_id(),
        "api_id": await st.api_id(),
        "test_mode": bool(await st.test_mode()),
        "auth_key_hex": (await st.auth_key()).hex(),
        "user_id": await st.user_id(),
        "is_bot": bool(await st.is_bot()),
    }
    if hasattr(st, "server_address"):
        out["address"] = await st.server_address()
        out["port"] = await st.port()
    await st.close()
    return out


async def main():
    for text in sys.argv[1:]:
        print(json.dumps(await read(text)))


asyncio.run(main())
