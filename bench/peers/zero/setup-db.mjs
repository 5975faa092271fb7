// Creates the benchmark table in the upstream Postgres (idempotent).
// Usage: ZERO_UPSTREAM_DB=postgres://... node setup-db.mjs
// Uses the `postgres` client that @rocicorp/zero itself depends on.
import postgres from 'postgres';
import {readFileSync} from 'node:fs';

const url = process.env.ZERO_UPSTREAM_DB;
if (!url) {
  console.error('setup-db: ZERO_UPSTREAM_DB is not set');
  process.exit(2);
}
const sql = postgres(url, {max: 1, onnotice: () => {}});
try {
  const [{wal_level: walLevel}] = await sql`SHOW wal_level`;
  if (walLevel !== 'logical') {
    console.error(`setup-db: upstream has wal_level=${walLevel}; zero-cache needs wal_level=logical`);
    process.exit(3);
  }
  const ddl = readFileSync(new URL('./schema.sql', import.meta.url), 'utf8');
  await sql.unsafe(ddl);
  console.log('setup-db: table message ready');
} finally {
  await sql.end();
}
