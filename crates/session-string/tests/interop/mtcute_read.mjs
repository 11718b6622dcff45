// Reads each string given on the command line with mtcute's own readStringSession (from
// @mtcute/core/utils.js) and prints one JSON object per string with what mtcute read.
// LAYER_NODE_MODULES points at the node_modules folder where `@mtcute/core` is installed.
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const utils = join(process.env.LAYER_NODE_MODULES, "@mtcute", "core", "utils.js");
const { readStringSession } = await import(pathToFileURL(utils).href);

const dc = (d) => ({
  id: d.id,
  address: d.ipAddress,
  port: d.port,
  ipv6: Boolean(d.ipv6),
  media_only: Boolean(d.mediaOnly),
  test_mode: Boolean(d.testMode),
});

for (const text of process.argv.slice(2)) {
  const session = readStringSession(text);
  const main = session.primaryDcs.main;
  const media = session.primaryDcs.media;
  console.log(JSON.stringify({
    dc: main.id,
    address: main.ipAddress,
    port: main.port,
    ipv6: Boolean(main.ipv6),
    test_mode: Boolean(main.testMode),
    media: media === main ? null : dc(media),
    user_id: session.self ? session.self.userId : null,
    is_bot: session.self ? session.self.isBot : null,
    auth_key_hex: Buffer.from(session.authKey).toString("hex"),
  }));
}
