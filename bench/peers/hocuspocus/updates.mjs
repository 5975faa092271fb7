// Makes the Yjs updates the benchmark's writer sends to Hocuspocus: COUNT pushes of
// a chat-like message ({id, text}) onto one Y.Array, in order, from one client. The
// first LATENCY carry the text "lat", the rest "tput" (the burst's tag). Prints one
// `<id> <update as hex>` per line: the generator sends the bytes as they are, and a
// subscriber looks for the id in what it receives.
import * as Y from "yjs";
import { randomUUID } from "node:crypto";

const [count, latency] = process.argv.slice(2).map(Number);
if (!(count > 0) || !(latency >= 0)) {
  console.error("usage: node updates.mjs COUNT LATENCY");
  process.exit(2);
}
const doc = new Y.Doc();
const messages = doc.getArray("messages");
let last = null;
doc.on("update", (update) => {
  last = update;
});
const lines = [];
for (let i = 0; i < count; i++) {
  const id = randomUUID();
  messages.push([{ id, text: i < latency ? "lat" : "tput" }]);
  lines.push(`${id} ${Buffer.from(last).toString("hex")}`);
}
process.stdout.write(lines.join("\n") + "\n");
