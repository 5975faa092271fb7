// Makes the Yjs updates the benchmark's writers send to Hocuspocus: COUNT pushes of
// a chat-like message ({id, text}) onto a Y.Array, each document's in order from one
// client. The first LATENCY carry the text "lat", the rest "tput" (the burst's tag).
// With DOCS (default 1), update k belongs to document k % DOCS (the writes workload
// hands write k to document k % DOCS), each document's updates following on from its
// own previous ones. Prints one `<id> <update as hex>` per line: the generator sends
// the bytes as they are, and a subscriber looks for the id in what it receives.
import * as Y from "yjs";
import { randomUUID } from "node:crypto";

const [count, latency, docCount = 1] = process.argv.slice(2).map(Number);
if (!(count > 0) || !(latency >= 0) || !(docCount >= 1)) {
  console.error("usage: node updates.mjs COUNT LATENCY [DOCS]");
  process.exit(2);
}
const docs = Array.from({ length: docCount }, () => {
  const doc = new Y.Doc();
  const made = { doc, messages: doc.getArray("messages"), last: null };
  doc.on("update", (update) => {
    made.last = update;
  });
  return made;
});
const lines = [];
for (let i = 0; i < count; i++) {
  const id = randomUUID();
  const made = docs[i % docCount];
  made.messages.push([{ id, text: i < latency ? "lat" : "tput" }]);
  lines.push(`${id} ${Buffer.from(made.last).toString("hex")}`);
}
process.stdout.write(lines.join("\n") + "\n");
