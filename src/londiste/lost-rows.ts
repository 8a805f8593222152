/**
 * The rows an old Londiste root has that the new root lacks or holds differently, compared by primary
 * key: the writes a failover lost. Read-only on both nodes; the result is written to a JSON file under
 * the state directory by the rejoin step that calls saveLostRows.
 */
import * as path from 'node:path';
import type { CommandContext } from '../core/context.js';
import type { Config } from '../core/config.js';
import { localTarget } from '../core/context.js';
import type { PeerPgTarget } from '../ports/index.js';
import { quoteIdent, quoteLiteral } from '../pg/conninfo.js';

/** One lost row: `missing` when the new root has no row with that key, `different` when its row differs. */
export interface LostRow {
  readonly table: string;
  readonly kind: 'missing' | 'different';
  readonly key: Readonly<Record<string, unknown>>;
  readonly row: Readonly<Record<string, unknown>>;
}

export interface LostRowsFile {
  readonly node: string;
  readonly newRoot: string;
  readonly at: string;
  readonly tables: readonly string[];
  readonly count: number;
  readonly rows: readonly LostRow[];
}

/** The primary-key columns of public.<table>, in key order, as one JSON array. */
export function primaryKeySql(table: string): string {
  return `SELECT coalesce(json_agg(a.attname ORDER BY array_position(i.indkey::int2[], a.attnum)), '[]') AS j
  FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey::int2[])
  WHERE i.indrelid = to_regclass(${quoteLiteral(`public.${table}`)}) AND i.indisprimary`;
}

function keyExpr(pk: readonly string[]): string {
  return `json_build_array(${pk.map((c) => `t.${quoteIdent(c)}`).join(', ')})::text`;
}

/** Every row's key (a JSON array as text) and the md5 of its text form, as one JSON object. */
export function rowHashesSql(table: string, pk: readonly string[]): string {
  return `SELECT coalesce(json_object_agg(${keyExpr(pk)}, md5(t::text)), '{}') AS j FROM public.${quoteIdent(table)} t`;
}

/** The full rows with these keys. */
export function rowsByKeySql(table: string, pk: readonly string[], keys: readonly string[]): string {
  return `SELECT ${keyExpr(pk)} AS k, row_to_json(t) AS r FROM public.${quoteIdent(table)} t
  WHERE ${keyExpr(pk)} = ANY(ARRAY[${keys.map(quoteLiteral).join(', ')}]::text[])`;
}

/** Keys present here and absent or different there, in key order. Pure. */
export function diffHashes(
  mine: Readonly<Record<string, string>>,
  theirs: Readonly<Record<string, string>>,
): { key: string; kind: 'missing' | 'different' }[] {
  return Object.keys(mine)
    .sort()
    .flatMap((key): { key: string; kind: 'missing' | 'different' }[] => {
      const other = theirs[key];
      if (other === undefined) {
        return [{ key, kind: 'missing' }];
      }
      return other === mine[key] ? [] : [{ key, kind: 'different' }];
    });
}

/** The name of the lost-rows file for a run started at `now`. */
export function lostRowsPath(config: Config, now: number): string {
  const stamp = new Date(now).toISOString().replace(/[:]/g, '').replace(/\..*$/, 'Z');
  return path.join(config.stateDir, `lost-rows-${stamp}.json`);
}

/**
 * Compares every replicated table of this node with the peer (the new root) and writes the lost rows.
 * @throws when a table has no primary key or either node does not answer.
 */
export async function saveLostRows(
  ctx: CommandContext,
  file: string,
  password: string,
): Promise<{ count: number; file: string; perTable: Record<string, number> }> {
  const { config } = ctx;
  const { pg } = ctx.ports;
  const db = config.chefServer.database;
  const local = localTarget(config);
  const peer: PeerPgTarget = {
    host: config.peer.address,
    port: config.peer.postgresPort,
    user: config.replication.user,
    password,
    database: db,
    connectTimeoutMs: 5_000,
    statementTimeoutMs: 600_000,
  };
  const rows: LostRow[] = [];
  const perTable: Record<string, number> = {};
  for (const table of config.chefServer.tables) {
    const [pkRow] = await pg.queryLocal<{ j: string[] }>(local, db, primaryKeySql(table), 30_000);
    const pk = pkRow?.j ?? [];
    if (pk.length === 0) {
      throw new Error(`public.${table} has no primary key on ${config.node.name}: rows cannot be compared`);
    }
    const [mine, theirs] = await Promise.all([
      pg.queryLocal<{ j: Record<string, string> }>(local, db, rowHashesSql(table, pk), 600_000),
      pg.queryPeer<{ j: Record<string, string> }>(peer, rowHashesSql(table, pk)),
    ]);
    const diff = diffHashes(mine[0]?.j ?? {}, theirs[0]?.j ?? {});
    perTable[table] = diff.length;
    for (let i = 0; i < diff.length; i += 500) {
      const chunk = diff.slice(i, i + 500);
      const found = await pg.queryLocal<{ k: string; r: Record<string, unknown> }>(
        local,
        db,
        rowsByKeySql(
          table,
          pk,
          chunk.map((d) => d.key),
        ),
        600_000,
      );
      const byKey = new Map(found.map((f) => [f.k, f.r]));
      for (const d of chunk) {
        const row = byKey.get(d.key);
        if (row) {
          rows.push({ table, kind: d.kind, key: Object.fromEntries(pk.map((c) => [c, row[c]])), row });
        }
      }
    }
  }
  const record: LostRowsFile = {
    node: config.node.name,
    newRoot: config.peer.name,
    at: new Date(ctx.ports.clock.now()).toISOString(),
    tables: config.chefServer.tables,
    count: rows.length,
    rows,
  };
  await ctx.ports.files.mkdirp(path.dirname(file), 0o700);
  await ctx.ports.files.writeAtomic(file, `${JSON.stringify(record, null, 2)}\n`, 0o600);
  return { count: rows.length, file, perTable };
}
