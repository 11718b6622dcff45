// Loads each string given on the command line with GramJS's own StringSession (offline: no
// client, no connection) and prints one JSON object per string with what GramJS read.
// LAYER_NODE_MODULES points at the node_modules folder where `telegram` is installed.
import { createRequire } from "node:module";

const require = createRequire(process.env.LAYER_NODE_MODULES + "/");
const { StringSession } = require("telegram/sessions");

for (const text of process.argv.slice(2)) {
  const session = new StringSession(text);
  await session.load();
  const key = session.authKey ? session.authKey.getKey() : undefined;
  console.log(JSON.stringify({
    dc: session.dcId,
    address: session.serverAddress,
    port: session.port,
    auth_key_hex: key ? Buffer.from(key).toString("hex") : null,
  }));
}
