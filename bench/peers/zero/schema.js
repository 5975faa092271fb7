// Zero schema + permissions for the boardsync benchmark peer.
// Plain ESM JavaScript (no TypeScript build step needed), loaded by
// `zero-deploy-permissions --schema-path schema.js` (see start.sh).
//
// Postgres table (created by start.sh / schema.sql):
//   message(id text primary key, channel text, author text, text text, created_at bigint)
import {
  ANYONE_CAN_DO_ANYTHING,
  createSchema,
  definePermissions,
  number,
  string,
  table,
} from '@rocicorp/zero';

const message = table('message')
  .columns({
    id: string(),
    channel: string(),
    author: string(),
    text: string(),
    created_at: number(),
  })
  .primaryKey('id');

export const schema = createSchema({
  tables: [message],
  // Only needed by the Zero client library; zero-cache itself reads the
  // table layout from its SQLite replica.
  enableLegacyMutators: true,
  enableLegacyQueries: true,
});

// Benchmark peer: anyone may read and insert/update/delete any row.
// (Permissions are "deprecated" in Zero 1.x but still enforced by zero-cache
// for AST queries and CRUD mutations; with no permissions deployed no rows
// are synced and CRUD writes are denied.)
export const permissions = definePermissions(schema, () => ({
  message: ANYONE_CAN_DO_ANYTHING,
}));
