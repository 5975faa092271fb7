// Hocuspocus as boardsync's benchmark peer: its server, with its database extension
// storing each document in PostgreSQL (the persistence Hocuspocus documents), on
// PORT, against DATABASE_URL. DEBOUNCE_MS / MAX_DEBOUNCE_MS: when a changed
// document is stored (Hocuspocus' defaults: 2000 / 10000).
import { Server } from "@hocuspocus/server";
import { Database } from "@hocuspocus/extension-database";
import pg from "pg";

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 10 });
await pool.query(
  "CREATE TABLE IF NOT EXISTS hocuspocus_documents (name text PRIMARY KEY, data bytea NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())",
);

const server = new Server({
  port: Number(process.env.PORT),
  address: "127.0.0.1",
  quiet: true,
  debounce: Number(process.env.DEBOUNCE_MS ?? 2000),
  maxDebounce: Number(process.env.MAX_DEBOUNCE_MS ?? 10000),
  extensions: [
    new Database({
      fetch: async ({ documentName }) => {
        const { rows } = await pool.query("SELECT data FROM hocuspocus_documents WHERE name = $1", [documentName]);
        return rows[0]?.data ?? null;
      },
      store: async ({ documentName, state }) => {
        await pool.query(
          `INSERT INTO hocuspocus_documents (name, data) VALUES ($1, $2)
           ON CONFLICT (name) DO UPDATE SET data = excluded.data, updated_at = now()`,
          [documentName, state],
        );
      },
    }),
  ],
});
await server.listen();
console.log(`hocuspocus listening on ${server.webSocketURL}`);
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, async () => {
    await server.destroy();
    await pool.end();
    process.exit(0);
  });
}
