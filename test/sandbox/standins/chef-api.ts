/**
 * STAND-IN of erchef, the Chef Server 11 API (DESIGN.md section 8): a small Chef-shaped JSON API on the
 * node's `opscode_chef` database, reached the way erchef reaches it (db_host = postgresql['vip'],
 * db_port, opscode_chef / sql_password, read from `<root>/var/opt/chef-server/erchef/etc/app.config`).
 * No request signing, no search, no cookbooks. A write the database refuses (read-only transaction,
 * standby, connection refused, fenced) answers 503 as erchef would. Logs to
 * `<root>/var/log/chef-server/erchef/current` (stdout).
 *
 *   POST /clients {"name"}    201 {uri, private_key} | 409
 *   GET  /clients/N           200 | 404
 *   PUT  /nodes/N             200 updated | 201 created (node JSON stored as plain bytes)
 *   POST /nodes               201 | 409
 *   GET  /nodes/N             200 | 404
 *   GET  /users/N             200 | 404
 *   GET  /_status             200 {db: {reachable, writable, inRecovery, host, port}}   (sandbox only)
 *   POST /_reindex            200 {counts}   (what reindex-chef-server asks erchef to do; sandbox only)
 *   GET  /_ping               200 (no database)
 *
 * Every answer carries `x-sandbox-erchef: <listen address>` (sandbox only), naming the node that answered.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { readFile, writeFile } from 'node:fs/promises';
import pg, { type QueryResult, type QueryResultRow } from 'pg';
import { nodePaths } from '../paths.js';
import { BOOTSTRAP_REQUESTOR, generateRsaKeyPair, makeOscId, OSC_ORG_ID } from './reconfigure.js';

interface DbSettings {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  listen: string;
  apiPort: number;
}

function log(msg: string): void {
  process.stdout.write(`${new Date().toISOString()} ${msg}\n`);
}

function term(text: string, key: string): string | undefined {
  const m = new RegExp(`\\{${key},\\s*"?([^"}]*)"?\\}`).exec(text);
  return m?.[1];
}

async function readSettings(configFile: string): Promise<DbSettings> {
  const text = await readFile(configFile, 'utf8');
  const need = (k: string): string => {
    const v = term(text, k);
    if (v === undefined) {
      throw new Error(`${configFile}: no {${k}, ...}`);
    }
    return v;
  };
  return {
    host: need('db_host'),
    port: Number(need('db_port')),
    user: need('db_user'),
    password: need('db_pass'),
    database: need('db_name'),
    listen: need('ip'),
    apiPort: Number(need('port')),
  };
}

/** Errors that mean "the database cannot take this write now": answer 503. */
function isUnavailable(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  const message = typeof e.message === 'string' ? e.message : '';
  return (
    code === '25006' || // read_only_sql_transaction (standby, default_transaction_read_only)
    code.startsWith('08') || // connection exceptions
    code.startsWith('57P') || // admin shutdown, crash shutdown, cannot connect now
    code === '53300' || // too many connections
    code === '28P01' || // password authentication failed (fenced by pg_hba)
    code === '28000' ||
    code === 'ECONNREFUSED' ||
    code === 'ECONNRESET' ||
    code === 'ENOENT' ||
    code === 'ETIMEDOUT' ||
    /terminat|timeout|Connection|ECONN|read-only/i.test(message)
  );
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) {
    chunks.push(c as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  return text === '' ? {} : (JSON.parse(text) as unknown);
}

function sqlNow(): string {
  return new Date().toISOString().replace('T', ' ').replace('Z', '');
}

async function main(): Promise<void> {
  const rootIdx = process.argv.indexOf('--root');
  const root = rootIdx >= 0 ? process.argv[rootIdx + 1] : process.env['CHEF_STANDIN_ROOT'];
  if (root === undefined) {
    throw new Error('chef-api stand-in: --root is required');
  }
  const p = nodePaths(root);
  const s = await readSettings(p.erchefConfig);
  const pool = new pg.Pool({
    host: s.host,
    port: s.port,
    user: s.user,
    password: s.password,
    database: s.database,
    max: 5,
    // erchef's sqerl pool opens its connections at start and keeps them (db_pool_size); so does this one.
    idleTimeoutMillis: 0,
    connectionTimeoutMillis: 2_000,
    statement_timeout: 5_000,
    application_name: 'erchef (chef-ha sandbox stand-in)',
  });
  // an idle client whose server went away must not crash the process
  pool.on('error', (error) => {
    log(`pool error: ${error.message}`);
  });
  pool.on('connect', (client) => {
    client.on('error', (error) => {
      log(`client error: ${error.message}`);
    });
  });
  // Like pool.query, but an error the server answered (a SQLSTATE such as 25006 read-only) keeps the
  // connection, as erchef's sqerl pool does; pool.query would destroy it on any error.
  async function query<R extends QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<R>> {
    const client = await pool.connect();
    try {
      const result = await client.query<R>(text, values);
      client.release();
      return result;
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      const serverAnswered =
        typeof code === 'string' &&
        /^[0-9A-Z]{5}$/.test(code) &&
        !code.startsWith('57') &&
        !code.startsWith('08');
      client.release(serverAnswered ? undefined : (error as Error));
      throw error;
    }
  }
  // Keep POOL_MIN connections open, reopening them after the database comes back, as sqerl does.
  const POOL_MIN = 2;
  const keepWarm = async (): Promise<void> => {
    if (pool.totalCount >= POOL_MIN) {
      return;
    }
    const clients = await Promise.allSettled(
      Array.from({ length: POOL_MIN - pool.totalCount }, () => pool.connect()),
    );
    for (const c of clients) {
      if (c.status === 'fulfilled') {
        c.value.release();
      }
    }
  };
  setInterval(() => {
    keepWarm().catch(() => undefined);
  }, 1_000).unref();
  void keepWarm().catch(() => undefined);

  const base = `http://${s.listen}:${s.apiPort}`;

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', base);
    const parts = url.pathname
      .split('/')
      .filter((x) => x !== '')
      .map(decodeURIComponent);
    const method = req.method ?? 'GET';
    const [kind, name, extra] = parts;

    if (kind === '_ping' && parts.length === 1) {
      send(res, 200, { status: 'pong' });
      return;
    }
    if (kind === '_status' && parts.length === 1 && method === 'GET') {
      const status = {
        reachable: false,
        writable: false,
        inRecovery: null as boolean | null,
        host: s.host,
        port: s.port,
        error: null as string | null,
      };
      try {
        const r = await query<{ ro: string; rec: boolean }>(
          "select current_setting('transaction_read_only') as ro, pg_is_in_recovery() as rec",
        );
        const row = r.rows[0];
        status.reachable = true;
        status.inRecovery = row?.rec ?? null;
        status.writable = row?.ro === 'off' && !row.rec;
      } catch (error) {
        status.error = error instanceof Error ? error.message : String(error);
      }
      send(res, 200, { db: status, pid: process.pid });
      return;
    }
    if (kind === '_reindex' && parts.length === 1 && method === 'POST') {
      const counts: Record<string, number> = {};
      for (const table of ['nodes', 'roles', 'environments', 'clients', 'data_bag_items']) {
        const r = await query<{ id: string; name: string }>(
          `select id, ${table === 'data_bag_items' ? 'item_name' : 'name'} as name from ${table} where org_id = $1`,
          [OSC_ORG_ID],
        );
        counts[table] = r.rowCount ?? r.rows.length;
      }
      const record = { reindexedAt: new Date().toISOString(), counts };
      await writeFile(p.reindexFile, JSON.stringify(record) + '\n');
      log(`reindex ${JSON.stringify(counts)}`);
      send(res, 200, record);
      return;
    }
    if (kind === 'clients' && parts.length === 1 && method === 'POST') {
      const body = (await readBody(req)) as {
        name?: unknown;
        clientname?: unknown;
        admin?: unknown;
        validator?: unknown;
      };
      const cname =
        typeof body.name === 'string'
          ? body.name
          : typeof body.clientname === 'string'
            ? body.clientname
            : '';
      if (!/^[A-Za-z0-9._-]+$/.test(cname)) {
        send(res, 400, { error: ["Field 'name' invalid"] });
        return;
      }
      const exists = await query('select 1 from clients where org_id = $1 and name = $2', [
        OSC_ORG_ID,
        cname,
      ]);
      if ((exists.rowCount ?? 0) > 0) {
        send(res, 409, { error: ['Client already exists'] });
        return;
      }
      const { privatePem, publicPem } = await generateRsaKeyPair();
      const id = makeOscId();
      const now = sqlNow();
      try {
        await query(
          'INSERT INTO clients ( id, authz_id, org_id, name, validator, admin, public_key, pubkey_version, last_updated_by, created_at, updated_at ) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)',
          [
            id,
            id,
            OSC_ORG_ID,
            cname,
            body.validator === true,
            body.admin === true,
            publicPem,
            0,
            BOOTSTRAP_REQUESTOR,
            now,
            now,
          ],
        );
      } catch (error) {
        if ((error as { code?: unknown }).code === '23505') {
          send(res, 409, { error: ['Client already exists'] });
          return;
        }
        throw error;
      }
      send(res, 201, { uri: `${base}/clients/${encodeURIComponent(cname)}`, private_key: privatePem });
      return;
    }
    if (kind === 'clients' && name !== undefined && extra === undefined && method === 'GET') {
      const r = await query<{ name: string; validator: boolean; admin: boolean; public_key: string }>(
        'select name, validator, admin, public_key from clients where org_id = $1 and name = $2',
        [OSC_ORG_ID, name],
      );
      const row = r.rows[0];
      if (row === undefined) {
        send(res, 404, { error: [`Cannot load client ${name}`] });
        return;
      }
      send(res, 200, {
        name: row.name,
        clientname: row.name,
        validator: row.validator,
        admin: row.admin,
        public_key: row.public_key,
        json_class: 'Chef::ApiClient',
        chef_type: 'client',
      });
      return;
    }
    if (
      kind === 'nodes' &&
      ((name !== undefined && extra === undefined && method === 'PUT') ||
        (parts.length === 1 && method === 'POST'))
    ) {
      const node = (await readBody(req)) as Record<string, unknown>;
      const nname = name ?? (typeof node['name'] === 'string' ? node['name'] : '');
      if (!/^[A-Za-z0-9._:-]+$/.test(nname)) {
        send(res, 400, { error: ["Field 'name' invalid"] });
        return;
      }
      const doc = {
        chef_type: 'node',
        json_class: 'Chef::Node',
        chef_environment: '_default',
        ...node,
        name: nname,
      };
      const env = typeof doc.chef_environment === 'string' ? doc.chef_environment : '_default';
      const id = makeOscId();
      const now = sqlNow();
      const bytes = Buffer.from(JSON.stringify(doc), 'utf8');
      if (method === 'POST') {
        try {
          await query(
            'INSERT INTO nodes (id, authz_id, org_id, name, environment, last_updated_by, created_at, updated_at, serialized_object) VALUES ($1, $1, $2, $3, $4, $5, $6, $6, $7)',
            [id, OSC_ORG_ID, nname, env, BOOTSTRAP_REQUESTOR, now, bytes],
          );
        } catch (error) {
          if ((error as { code?: unknown }).code === '23505') {
            send(res, 409, { error: ['Node already exists'] });
            return;
          }
          throw error;
        }
        send(res, 201, { uri: `${base}/nodes/${encodeURIComponent(nname)}` });
        return;
      }
      const r = await query<{ inserted: boolean }>(
        `INSERT INTO nodes (id, authz_id, org_id, name, environment, last_updated_by, created_at, updated_at, serialized_object)
         VALUES ($1, $1, $2, $3, $4, $5, $6, $6, $7)
         ON CONFLICT ON CONSTRAINT nodes_org_id_name_key DO UPDATE
           SET environment = EXCLUDED.environment, last_updated_by = EXCLUDED.last_updated_by,
               updated_at = EXCLUDED.updated_at, serialized_object = EXCLUDED.serialized_object
         RETURNING (xmax = 0) AS inserted`,
        [id, OSC_ORG_ID, nname, env, BOOTSTRAP_REQUESTOR, now, bytes],
      );
      send(res, r.rows[0]?.inserted === true ? 201 : 200, doc);
      return;
    }
    if (kind === 'nodes' && name !== undefined && extra === undefined && method === 'GET') {
      const r = await query<{ serialized_object: Buffer | null }>(
        'select serialized_object from nodes where org_id = $1 and name = $2',
        [OSC_ORG_ID, name],
      );
      const row = r.rows[0];
      if (row === undefined) {
        send(res, 404, { error: [`Cannot load node ${name}`] });
        return;
      }
      send(res, 200, JSON.parse(row.serialized_object?.toString('utf8') ?? '{}') as unknown);
      return;
    }
    if (kind === 'users' && name !== undefined && extra === undefined && method === 'GET') {
      const r = await query<{
        username: string;
        admin: boolean;
        public_key: string | null;
        email: string | null;
      }>('select username, admin, public_key, email from osc_users where username = $1', [name]);
      const row = r.rows[0];
      if (row === undefined) {
        send(res, 404, { error: [`Cannot load user ${name}`] });
        return;
      }
      send(res, 200, {
        name: row.username,
        username: row.username,
        admin: row.admin,
        public_key: row.public_key,
        email: row.email,
      });
      return;
    }
    send(res, 404, { error: ['Not Found'] });
  }

  const server = createServer((req, res) => {
    const started = Date.now();
    // sandbox only: which stand-in answered (the fault suite attributes each acknowledged write to a node)
    res.setHeader('x-sandbox-erchef', s.listen);
    route(req, res)
      .catch((error: unknown) => {
        const unavailable = isUnavailable(error);
        const message = error instanceof Error ? error.message : String(error);
        if (!res.headersSent) {
          send(res, unavailable ? 503 : 500, {
            error: [unavailable ? `Service Unavailable: ${message}` : message],
          });
        }
      })
      .finally(() => {
        log(`${req.method ?? '?'} ${req.url ?? '?'} ${res.statusCode} ${Date.now() - started}ms`);
      });
  });
  server.listen(s.apiPort, s.listen, () => {
    log(`erchef stand-in listening on ${base}, database ${s.user}@${s.host}:${s.port}/${s.database}`);
  });
  const shutdown = (): void => {
    log('stopping');
    server.close();
    server.closeAllConnections();
    void pool.end().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

await main();
