/**
 * Read-only Londiste facts: packages, the Debian pgqd service, and the cascade state of a node read with
 * SQL from pgq / pgq_node / londiste (never the packaged `status`, which crashes while a node is down).
 */
import type { CommandContext } from '../core/context.js';
import { localTarget } from '../core/context.js';
import type { Config } from '../core/config.js';
import type { PeerPgTarget } from '../ports/index.js';
import { quoteLiteral } from '../pg/conninfo.js';
import { londistePackages, londistePaths } from './names.js';

export interface TableFacts {
  readonly name: string;
  readonly exists: boolean;
  readonly hasPrimaryKey: boolean;
  readonly rows: number;
}

/** TableFacts as JSON brings them (bigint counts may arrive as strings). */
type RawTableFacts = Omit<TableFacts, 'rows'> & { readonly rows: number | string };

export interface ReplicatedTable {
  readonly table: string;
  readonly local: boolean;
  /** null while waiting for the copy, then in-copy, catching-up, wanna-sync:N, do-sync:N, ok. */
  readonly state: string | null;
}

/** One node's cascade state, from SQL. */
export interface NodeState {
  readonly reachable: boolean;
  readonly error?: string;
  readonly extensions: boolean;
  /** root, branch or leaf; undefined when the node is not a member of the queue. */
  readonly nodeType?: string;
  readonly nodeName?: string;
  readonly provider?: string;
  readonly workerName?: string;
  readonly paused?: boolean;
  readonly uptodate?: boolean;
  readonly lastError?: string | null;
  readonly tables: readonly ReplicatedTable[];
  readonly chefTables: readonly TableFacts[];
  /** The queue's ticker settings (roots only), as intervals in ms. */
  readonly queue?: {
    readonly maxLagMs: number;
    readonly idlePeriodMs: number;
    readonly disableInsert: boolean;
    readonly lastTickId: number | null;
    readonly lastTickAgeS: number | null;
  };
  /** Roles granted as the node needs (pgq_admin for the replication role). */
  readonly grantsDone: boolean;
  /** Members recorded in pgq_node.node_location (name → dead flag). */
  readonly members: readonly { readonly name: string; readonly dead: boolean; readonly location: string }[];
  /** Consumers of the local queue with lag (roots and branches). */
  readonly consumers: readonly {
    readonly name: string;
    readonly lagS: number | null;
    readonly lastSeenS: number | null;
    readonly pendingEvents: number | null;
  }[];
}

export interface DaemonFacts {
  readonly supervisorPid?: number;
  readonly pgqdPid?: number;
  readonly workerPid?: number;
}

export interface LondisteFacts {
  readonly missingPackages: readonly string[];
  /** Debian's own pgqd.service is enabled or active (it would tick the cluster a second time). */
  readonly systemPgqd: 'enabled' | 'no' | 'no-systemctl';
  readonly local: NodeState;
  readonly peer: NodeState;
  readonly daemons: DaemonFacts;
  readonly files: { readonly pgqdIni?: string; readonly workerIni?: string };
}

const EMPTY: Omit<NodeState, 'reachable'> = {
  extensions: false,
  tables: [],
  chefTables: [],
  grantsDone: false,
  members: [],
  consumers: [],
};

/** The SQL statements of a node's state, in order; each returns JSON in a column named j. */
export function nodeStateSql(config: Config): string {
  const tables = `ARRAY[${config.chefServer.tables.map(quoteLiteral).join(', ')}]::text[]`;
  const role = quoteLiteral(config.replication.user);
  // One round trip; every part guards itself with to_regclass so that it answers on any database.
  return `SELECT json_build_object(
  'extensions', (SELECT count(*) = 3 FROM pg_extension WHERE extname IN ('pgq', 'pgq_node', 'londiste')),
  'chefTables', (SELECT coalesce(json_agg(json_build_object('name', t.name, 'exists', c.oid IS NOT NULL,
        'hasPrimaryKey', EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p'),
        'rows', coalesce((SELECT n_live_tup FROM pg_stat_user_tables s WHERE s.relid = c.oid), 0))), '[]')
      FROM unnest(${tables}) AS t(name)
      LEFT JOIN pg_class c ON c.relname = t.name AND c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'),
  'grantsDone', (SELECT to_regrole('pgq_admin') IS NOT NULL AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ${role})
      AND pg_has_role(${role}, 'pgq_admin', 'MEMBER')
      AND (SELECT bool_and(has_table_privilege(${role}, c.oid, 'UPDATE')) FROM pg_class c
           WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND c.relname = ANY(${tables})))
) AS j`;
}

/** Cascade state once the extensions exist. */
export function cascadeSql(config: Config): string {
  const q = quoteLiteral(config.londiste.queue);
  return `SELECT json_build_object(
  'node', (SELECT row_to_json(n) FROM (SELECT i.node_type, i.node_name, i.worker_name, s.provider_node, s.paused,
        s.uptodate, s.cur_error FROM pgq_node.node_info i LEFT JOIN pgq_node.local_state s
        ON s.queue_name = i.queue_name AND s.consumer_name = i.worker_name WHERE i.queue_name = ${q}) n),
  'tables', (SELECT coalesce(json_agg(json_build_object('table', table_name, 'local', local, 'state', merge_state)
        ORDER BY table_name), '[]') FROM londiste.table_info WHERE queue_name = ${q}),
  'queue', (SELECT json_build_object('maxLagMs', extract(epoch FROM queue_ticker_max_lag) * 1000,
        'idlePeriodMs', extract(epoch FROM queue_ticker_idle_period) * 1000,
        'disableInsert', queue_disable_insert,
        'lastTickId', (SELECT max(tick_id) FROM pgq.tick WHERE tick_queue = queue_id),
        'lastTickAgeS', (SELECT extract(epoch FROM now() - max(tick_time)) FROM pgq.tick WHERE tick_queue = queue_id))
        FROM pgq.queue WHERE queue_name = ${q}),
  'members', (SELECT coalesce(json_agg(json_build_object('name', node_name, 'dead', dead, 'location', node_location)
        ORDER BY node_name), '[]') FROM pgq_node.node_location WHERE queue_name = ${q}),
  'consumers', (SELECT coalesce(json_agg(json_build_object('name', consumer_name,
        'lagS', extract(epoch FROM lag), 'lastSeenS', extract(epoch FROM last_seen),
        'pendingEvents', pending_events) ORDER BY consumer_name), '[]')
        FROM pgq.get_consumer_info() WHERE queue_name = ${q})
) AS j`;
}

interface RawState {
  extensions: boolean;
  chefTables: RawTableFacts[];
  grantsDone: boolean;
}

interface RawCascade {
  node: {
    node_type: string;
    node_name: string;
    worker_name: string;
    provider_node: string | null;
    paused: boolean | null;
    uptodate: boolean | null;
    cur_error: string | null;
  } | null;
  tables: ReplicatedTable[];
  queue: NodeState['queue'] | null;
  members: NodeState['members'];
  consumers: NodeState['consumers'];
}

/** Turns the two JSON answers into a NodeState. Pure. */
export function parseNodeState(state: RawState, cascade: RawCascade | undefined): NodeState {
  const n = cascade?.node;
  return {
    reachable: true,
    extensions: state.extensions,
    chefTables: state.chefTables.map((t) => ({ ...t, rows: Number(t.rows) })),
    grantsDone: state.grantsDone,
    tables: cascade?.tables ?? [],
    members: cascade?.members ?? [],
    consumers: cascade?.consumers ?? [],
    ...(n
      ? {
          nodeType: n.node_type,
          nodeName: n.node_name,
          workerName: n.worker_name,
          ...(n.provider_node ? { provider: n.provider_node } : {}),
          paused: n.paused ?? false,
          uptodate: n.uptodate ?? false,
          lastError: n.cur_error,
        }
      : {}),
    ...(cascade?.queue ? { queue: cascade.queue } : {}),
  };
}

/** Reads this node's cascade state over the socket. Never throws. */
export async function readLocalNodeState(ctx: CommandContext): Promise<NodeState> {
  const { pg } = ctx.ports;
  const target = localTarget(ctx.config);
  const db = ctx.config.chefServer.database;
  try {
    const [s] = await pg.queryLocal<{ j: RawState }>(target, db, nodeStateSql(ctx.config), 10_000);
    if (!s) {
      return { reachable: false, error: 'no answer', ...EMPTY };
    }
    let cascade: RawCascade | undefined;
    if (s.j.extensions) {
      const [c] = await pg.queryLocal<{ j: RawCascade }>(target, db, cascadeSql(ctx.config), 10_000);
      cascade = c?.j;
    }
    return parseNodeState(s.j, cascade);
  } catch (error) {
    return { reachable: false, error: firstLine(error), ...EMPTY };
  }
}

/** Reads the peer's cascade state over TCP as the replication role. Never throws. */
export async function readPeerNodeState(
  ctx: CommandContext,
  password: string | undefined,
): Promise<NodeState> {
  if (!password) {
    return { reachable: false, error: 'no replication secret yet', ...EMPTY };
  }
  const target: PeerPgTarget = {
    host: ctx.config.peer.address,
    port: ctx.config.peer.postgresPort,
    user: ctx.config.replication.user,
    password,
    database: ctx.config.chefServer.database,
    connectTimeoutMs: 2_000,
    statementTimeoutMs: 5_000,
  };
  try {
    const [s] = await ctx.ports.pg.queryPeer<{ j: RawState }>(target, nodeStateSql(ctx.config));
    if (!s) {
      return { reachable: false, error: 'no answer', ...EMPTY };
    }
    let cascade: RawCascade | undefined;
    if (s.j.extensions) {
      const [c] = await ctx.ports.pg.queryPeer<{ j: RawCascade }>(target, cascadeSql(ctx.config));
      cascade = c?.j;
    }
    return parseNodeState(s.j, cascade);
  } catch (error) {
    return { reachable: false, error: firstLine(error), ...EMPTY };
  }
}

function firstLine(error: unknown): string {
  const text = (error instanceof Error ? error.message : String(error))
    .split('\n')
    .slice(0, 2)
    .join(' ')
    .trim();
  // SqlError starts with the SQL sent; the reason is what matters here.
  return text.replace(/^SQL [^\n]*?: (?=\S+:\d+: )/, '');
}

/** Which of the packages are missing (dpkg-query). */
export async function readMissingPackages(ctx: CommandContext): Promise<string[]> {
  const pkgs = londistePackages(ctx.config.postgres.version);
  const r = await ctx.ports.shell.run(
    ['dpkg-query', '-W', '-f', '${Package} ${db:Status-Abbrev}\\n', ...pkgs],
    {
      timeoutMs: 30_000,
    },
  );
  const installed = new Set(
    r.stdout
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter(([, st]) => st?.startsWith('ii'))
      .map(([name]) => name),
  );
  return pkgs.filter((p) => !installed.has(p));
}

async function readPid(ctx: CommandContext, file: string): Promise<number | undefined> {
  const text = await ctx.ports.files.readTextIfExists(file).catch(() => undefined);
  const pid = Number(text?.trim().split('\n')[0]);
  return Number.isInteger(pid) && pid > 0 && ctx.ports.proc.isAlive(pid) ? pid : undefined;
}

/** Live pids of the supervisor, pgqd and the worker (from their pid files). */
export async function readDaemons(ctx: CommandContext): Promise<DaemonFacts> {
  const p = londistePaths(ctx.config);
  const [supervisorPid, pgqdPid, workerPid] = await Promise.all([
    readPid(ctx, p.supervisorPid),
    readPid(ctx, p.pgqdPid),
    readPid(ctx, p.workerPid),
  ]);
  return {
    ...(supervisorPid ? { supervisorPid } : {}),
    ...(pgqdPid ? { pgqdPid } : {}),
    ...(workerPid ? { workerPid } : {}),
  };
}

async function readSystemPgqd(ctx: CommandContext): Promise<LondisteFacts['systemPgqd']> {
  if (!ctx.config.londiste.disableSystemPgqd) {
    return 'no';
  }
  const systemctl = ['/usr/bin/systemctl', '/bin/systemctl'];
  let bin: string | undefined;
  for (const b of systemctl) {
    if (await ctx.ports.shell.isExecutable(b)) {
      bin = b;
      break;
    }
  }
  if (!bin) {
    return 'no-systemctl';
  }
  const enabled = await ctx.ports.shell.run([bin, 'is-enabled', 'pgqd.service'], { timeoutMs: 10_000 });
  const active = await ctx.ports.shell.run([bin, 'is-active', 'pgqd.service'], { timeoutMs: 10_000 });
  return enabled.stdout.trim() === 'enabled' || active.stdout.trim() === 'active' ? 'enabled' : 'no';
}

/** Everything Londiste planners read. Never changes anything. */
export async function gatherLondisteFacts(
  ctx: CommandContext,
  passwordOverride?: string,
  options: { readonly packages?: boolean } = {},
): Promise<LondisteFacts> {
  const password = passwordOverride ?? (await ctx.secrets.read('replication'));
  const p = londistePaths(ctx.config);
  // failover skips dpkg-query and systemctl (it installs nothing): they only delay the first write.
  const packages = options.packages ?? true;
  const [missingPackages, systemPgqd, local, peer, daemons, pgqdIni, workerIni] = await Promise.all([
    packages ? readMissingPackages(ctx) : Promise.resolve([]),
    packages ? readSystemPgqd(ctx) : Promise.resolve('no' as const),
    readLocalNodeState(ctx),
    readPeerNodeState(ctx, password),
    readDaemons(ctx),
    ctx.ports.files.readTextIfExists(p.pgqdIni).catch(() => undefined),
    ctx.ports.files.readTextIfExists(p.workerIni).catch(() => undefined),
  ]);
  return {
    missingPackages,
    systemPgqd,
    local,
    peer,
    daemons,
    files: {
      ...(pgqdIni === undefined ? {} : { pgqdIni }),
      ...(workerIni === undefined ? {} : { workerIni }),
    },
  };
}
