/**
 * Configuration: one JSON file (DESIGN.md section 3). `parseConfig` validates once and reports every
 * problem at once, unknown keys included; every path chef-ha touches is a key with the Chef Server 11 /
 * Debian default, so tests and unusual installs can point it elsewhere.
 */
import { z } from 'zod';
import { ConfigError } from './errors.js';

export const DEFAULT_CONFIG_PATH = '/etc/chef-ha/chef-ha.json';

const nodeName = z
  .string()
  .regex(
    /^[a-z][a-z0-9-]{0,40}$/,
    'use lower-case letters, digits and "-", starting with a letter (at most 41)',
  );
const port = z.number().int().min(1).max(65535);
const absPath = z.string().regex(/^\//, 'must be an absolute path');

const sshSchema = z.strictObject({
  target: z.string().regex(/^([A-Za-z0-9._-]+@)?[A-Za-z0-9.:_-]+$/, 'use [user@]host'),
  port: port.default(22),
  identityFile: absPath.optional(),
  knownHostsFile: absPath.optional(),
  /** argv of the peer's chef-ha-ctl, as the remote shell should run it. */
  ctl: z.array(z.string().min(1)).min(1).default(['chef-ha-ctl']),
  connectTimeoutMs: z.number().int().min(100).default(5000),
});

/** The haproxy section (haproxy-config, failover's proxy fence, check's routing window). */
const haproxySchema = z.strictObject({
  /** Frontend for the Chef API (TCP: TLS passes through to the node's nginx). */
  chefApi: z
    .strictObject({ bind: z.string().min(1).default('0.0.0.0'), port: port.default(443) })
    .prefault({}),
  /** Frontend for writes to PostgreSQL (the primary only). */
  postgres: z
    .strictObject({ bind: z.string().min(1).default('0.0.0.0'), port: port.default(5432) })
    .prefault({}),
  /** Frontend for reads: standbys within readLagBytes, the primary when none is. */
  postgresReadOnly: z
    .strictObject({ bind: z.string().min(1).default('0.0.0.0'), port: port.default(5433) })
    .prefault({}),
  /** Port of this node's Chef API (nginx); the peer's is haproxy.peerChefApiPort. */
  chefApiPort: port.default(443),
  peerChefApiPort: port.optional(),
  interMs: z.number().int().min(100).default(1000),
  fastinterMs: z.number().int().min(50).default(250),
  downinterMs: z.number().int().min(50).default(250),
  fall: z.number().int().min(1).max(10).default(2),
  rise: z.number().int().min(1).max(10).default(1),
  checkTimeoutMs: z.number().int().min(50).default(1000),
  connectTimeoutMs: z.number().int().min(50).default(1000),
  /** Lag bound of the read-only frontend (the health endpoint's /replica?lag=). */
  readLagBytes: z
    .number()
    .int()
    .min(0)
    .default(16 * 1024 * 1024),
  maxConn: z.number().int().min(1).default(2000),
  /** The proxy's local runtime API socket (mode 600, level admin). */
  socket: absPath.default('/run/haproxy/admin.sock'),
  /** Server state seeded DOWN before each start, so that no server takes traffic before its first check. */
  stateFile: absPath.default('/var/lib/haproxy/chef-ha.state'),
  /**
   * The runtime API as failover reaches it from a node: "host:port" of a TCP admin socket on the
   * proxy host. Absent: failover does not fence through HAProxy.
   */
  runtimeApi: z
    .strictObject({
      address: z.string().regex(/^[^\s:]+:[0-9]{1,5}$|^\[[0-9a-fA-F:]+\]:[0-9]{1,5}$/, 'use host:port'),
      timeoutMs: z.number().int().min(50).default(1000),
    })
    .optional(),
});

const schema = z.strictObject({
  node: z.strictObject({ name: nodeName, address: z.string().min(1) }),
  peer: z.strictObject({
    name: nodeName,
    address: z.string().min(1),
    postgresPort: port.optional(),
    healthPort: port.optional(),
    ssh: sshSchema.optional(),
  }),
  replication: z
    .strictObject({
      mode: z.enum(['streaming', 'londiste']).default('streaming'),
      synchronous: z.boolean().default(false),
      user: z
        .string()
        .regex(/^[a-z_][a-z0-9_]*$/)
        .default('chef_ha_replication'),
      walKeepMb: z.number().int().min(0).default(256),
      streamingTimeoutMs: z.number().int().min(1000).default(60_000),
    })
    .prefault({}),
  postgres: z
    .strictObject({
      version: z
        .string()
        .regex(/^(9\.[2-6]|1[0-9])$/, 'a PostgreSQL major such as "15" or "9.2"')
        .default('15'),
      port: port.default(5432),
      host: z.string().min(1).optional(),
      bindir: absPath.optional(),
      dataDir: absPath.optional(),
      confDir: absPath.optional(),
      socketDir: absPath.default('/var/run/postgresql'),
      osUser: z.string().min(1).default('postgres'),
      superuser: z.string().min(1).default('postgres'),
      manager: z.enum(['pg_ctlcluster', 'pg_ctl']).default('pg_ctlcluster'),
      cluster: z.string().min(1).default('main'),
      logFile: absPath.optional(),
      passfile: absPath.default('/var/lib/postgresql/.chef-ha.pgpass'),
      /**
       * argv run (as root) before chef-ha starts PostgreSQL, for managers without systemd: the sandbox sets
       * it to `chef-ha-ctl guard`. In production the systemd drop-in runs the guard instead.
       */
      preStartHook: z.array(z.string().min(1)).min(1).optional(),
      /** Where setup-* installs the guard's drop-in for postgresql@<version>-<cluster>.service. */
      systemdUnitDir: absPath.default('/etc/systemd/system'),
    })
    .prefault({}),
  chefServer: z
    .strictObject({
      ctl: absPath.default('/opt/chef-server/bin/chef-server-ctl'),
      etcDir: absPath.default('/etc/chef-server'),
      omnibusDir: absPath.default('/opt/chef-server'),
      dataDir: absPath.default('/var/opt/chef-server'),
      database: z.string().min(1).default('opscode_chef'),
      /** The role erchef connects as (postgresql['sql_user']). */
      sqlUser: z.string().min(1).default('opscode_chef'),
      /** The read-only role (postgresql['sql_ro_user']). */
      sqlRoUser: z.string().min(1).default('opscode_chef_ro'),
      tables: z
        .array(z.string().regex(/^[a-z_][a-z0-9_]*$/))
        .min(1)
        .default(['clients', 'nodes', 'osc_users']),
      /** sha256 of recipes this site accepts as "the original" besides the upstream 11.x blobs. */
      originalRecipeSha256: z.array(z.string().regex(/^[0-9a-f]{64}$/)).default([]),
      embeddedPostgres: z
        .strictObject({
          bindir: absPath.default('/opt/chef-server/embedded/bin'),
          dataDir: absPath.default('/var/opt/chef-server/postgresql/data'),
          socketDir: absPath.default('/tmp'),
          port: port.default(5432),
          osUser: z.string().min(1).default('opscode-pgsql'),
          superuser: z.string().min(1).default('opscode-pgsql'),
        })
        .prefault({}),
      reindexTimeoutMs: z.number().int().min(1000).default(600_000),
    })
    .prefault({}),
  /** Londiste mode (Skytools 3): queue, daemons and tuned ticking (defaults from the lab's tuned runs). */
  londiste: z
    .strictObject({
      /** The PgQ queue carrying the replicated tables' events. */
      queue: z
        .string()
        .regex(/^[a-z_][a-z0-9_]{0,40}$/, 'a lower-case SQL identifier (letters, digits, "_")')
        .default('chef_ha'),
      /** Ini files, logs and pid files of pgqd and the worker; must be writable by postgres.osUser. */
      dir: absPath.default('/var/lib/postgresql/chef-ha-londiste'),
      /** pgqd ticker_period: how often pgqd calls pgq.ticker() (Skytools default 1000). */
      tickerPeriodMs: z.number().int().min(10).max(60_000).default(100),
      /** Queue ticker_max_lag: the longest an event waits for a tick (Skytools default 3000). */
      tickerMaxLagMs: z.number().int().min(10).max(600_000).default(100),
      /** Queue ticker_idle_period: a tick at least this often on an idle queue (Skytools default 60000). */
      tickerIdlePeriodMs: z.number().int().min(100).max(3_600_000).default(1000),
      /** Worker loop_delay: pause between batches (Skytools default 1000). */
      loopDelayMs: z.number().int().min(10).max(60_000).default(100),
      /** Tables copied at once during the initial copy (Skytools default 1). */
      parallelCopies: z.number().int().min(1).max(16).default(3),
      /** Worker retry delay after an error; decides how fast a takeover is noticed (Skytools default 20000). */
      exceptionSleepMs: z.number().int().min(100).max(600_000).default(1000),
      /** How long setup-slave waits for every table to reach `ok`. */
      syncTimeoutMs: z.number().int().min(1000).default(900_000),
      /** How often the supervisor checks pgqd and the worker. */
      superviseIntervalMs: z.number().int().min(100).max(60_000).default(1000),
      /** Disable Debian's own pgqd.service (it reads /etc/pgqd.ini and would tick the cluster twice). */
      disableSystemPgqd: z.boolean().default(true),
    })
    .prefault({}),
  health: z
    .strictObject({
      listen: z.string().min(1).default('0.0.0.0'),
      port: port.default(5445),
      /** How often the snapshot of PostgreSQL and the state files is refreshed. */
      refreshMs: z.number().int().min(100).max(60_000).default(1000),
      /** A snapshot older than this counts as unknown: every check answers 503 (fail closed). */
      staleMs: z.number().int().min(200).optional(),
      /** Connect and statement timeout of each probe (local and peer). */
      probeTimeoutMs: z.number().int().min(100).default(800),
      /** Connections served at once; more are refused by the kernel backlog / closed. */
      maxConnections: z.number().int().min(1).max(100_000).default(256),
      /** Time allowed to receive a request's headers (and the whole request). */
      requestTimeoutMs: z.number().int().min(100).default(2000),
      /**
       * Requests coming back after this long without any, while the peer was unreachable, mean this node
       * may have been cut off: /primary answers 503 until the peer has been probed again.
       */
      recheckAfterGapMs: z.number().int().min(100).default(3000),
    })
    .prefault({}),
  haproxy: haproxySchema.optional(),
  failover: z
    .strictObject({
      maxLagBytes: z
        .number()
        .int()
        .min(0)
        .default(16 * 1024 * 1024),
      promoteTimeoutMs: z.number().int().min(1000).default(30_000),
      /** Automatic failover through the leader key in etcd (needs dcs.etcd.endpoints). */
      automatic: z.boolean().default(false),
      /** TTL of the leader key's lease; etcd counts whole seconds. */
      ttlMs: z
        .number()
        .int()
        .min(2000)
        .max(600_000)
        .refine((v) => v % 1000 === 0, 'a whole number of seconds (etcd leases count seconds)')
        .default(10_000),
      /** How often the primary renews the leader key and the standby reads it. */
      loopMs: z.number().int().min(100).max(60_000).default(1000),
      /**
       * The primary fences itself this long before its lease could expire: at the last successful
       * renewal (time the request was sent) + ttlMs - selfFenceMarginMs.
       */
      selfFenceMarginMs: z.number().int().min(500).default(3500),
      /**
       * etcd unreachable past the deadline: the primary stays writable only while its last probe that saw
       * the standby following it (in recovery) is at most this old (Patroni's failsafe mode, for a pair).
       */
      failsafeMs: z.number().int().min(200).default(2000),
      /**
       * The standby takes an expired key only after the old primary has not answered as a writable
       * primary for this long (unless the old primary released the key after fencing itself).
       */
      peerQuietMs: z.number().int().min(500).default(5000),
    })
    .prefault({}),
  /** The consensus store of automatic failover (the third voter). */
  dcs: z
    .strictObject({
      etcd: z
        .strictObject({
          /** Client URLs of the etcd members (one on the proxy host, or three). */
          endpoints: z.array(z.string().regex(/^https?:\/\/[^\s/]+$/, 'use http://host:port')).default([]),
          /** Key prefix; default /chef-ha/<cluster>. */
          prefix: z
            .string()
            .regex(/^\/[A-Za-z0-9._/+-]*[^/]$/, 'an absolute key prefix without a trailing "/"')
            .optional(),
          /** Timeout of each etcd request. */
          requestTimeoutMs: z.number().int().min(100).default(1000),
          /** Timeout of connecting to a member. */
          dialTimeoutMs: z.number().int().min(100).default(1000),
        })
        .prefault({}),
      /** Name of the pair in the store; default: the two node names, sorted, joined with "+". */
      cluster: z
        .string()
        .regex(/^[a-z0-9][a-z0-9+._-]{0,80}$/)
        .optional(),
    })
    .prefault({}),
  monitor: z
    .strictObject({
      /** How often the monitor samples the local server. */
      loopMs: z.number().int().min(20).max(10_000).default(200),
      /**
       * How often it asks the peer for its role and timeline (a TCP connection with SCRAM each time, so not
       * every loop); a superseded old primary sees the newer timeline within about this long.
       */
      peerIntervalMs: z.number().int().min(20).max(60_000).default(500),
      /** The longest a commit may wait for the synchronous standby before the primary goes asynchronous. */
      degradeAfterMs: z.number().int().min(100).default(1000),
      /** Timeout of each local query; a query that takes longer counts as "no answer". */
      queryTimeoutMs: z.number().int().min(100).default(2000),
      /** Connect and statement timeout of each probe of the peer. */
      peerTimeoutMs: z.number().int().min(100).default(1000),
      /** Synchronous mode is restored once the standby's flush position is at most this far behind. */
      restoreMaxLagBytes: z
        .number()
        .int()
        .min(0)
        .default(1024 * 1024),
    })
    .prefault({}),
  stateDir: absPath.default('/var/opt/chef-ha'),
  minFreeDiskBytes: z.number().int().min(0).default(0),
});

type Parsed = z.output<typeof schema>;

type DeepReadonly<T> = T extends (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

/** The validated configuration with every default filled in. */
export type Config = DeepReadonly<
  Omit<Parsed, 'postgres' | 'peer' | 'health' | 'haproxy' | 'dcs'> & {
    dcs: { etcd: Parsed['dcs']['etcd'] & { prefix: string }; cluster: string };
    postgres: Parsed['postgres'] & { bindir: string; dataDir: string; confDir: string; logFile: string };
    peer: Parsed['peer'] & { postgresPort: number; healthPort: number };
    health: Parsed['health'] & { staleMs: number };
    haproxy: z.output<typeof haproxySchema> & {
      peerChefApiPort: number;
      /** The config file has a haproxy section (HAProxy is part of this site). */
      configured: boolean;
    };
  }
>;

function formatPath(path: readonly PropertyKey[]): string {
  return path.length === 0
    ? '(top level)'
    : path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p))).join('.');
}

/**
 * Validates raw JSON and fills defaults.
 * @throws ConfigError listing every problem, one per line, with its key path.
 */
export function parseConfig(raw: unknown, source = 'configuration'): Config {
  const result = schema.safeParse(raw);
  // Checks across keys run on the raw input too, so that they are reported with the schema's problems.
  const r = raw as { node?: { name?: unknown }; peer?: { name?: unknown } } | null;
  const crossProblems: string[] = [];
  if (typeof r?.node?.name === 'string' && r.node.name === r.peer?.name) {
    crossProblems.push(`peer.name: must differ from node.name ("${r.node.name}")`);
  }
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      if (issue.code === 'unrecognized_keys') {
        return `${formatPath(issue.path)}: unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
      }
      return `${formatPath(issue.path)}: ${issue.message}`;
    });
    problems.push(...crossProblems);
    throw new ConfigError(
      `${source} is invalid (${problems.length} problem${problems.length > 1 ? 's' : ''}):`,
      problems,
      'fix each key listed above; `chef-ha-ctl check` validates without changing anything',
    );
  }
  const c = result.data;
  if (c.failover.automatic && c.dcs.etcd.endpoints.length === 0) {
    crossProblems.push(
      'failover.automatic: true needs dcs.etcd.endpoints (the etcd members, e.g. ["http://10.0.0.10:2379"]); set them, or set failover.automatic to false',
    );
  }
  if (crossProblems.length > 0) {
    throw new ConfigError(`${source} is invalid:`, crossProblems, 'fix each key listed above');
  }
  const cluster = c.dcs.cluster ?? [c.node.name, c.peer.name].sort().join('+');
  const v = c.postgres.version;
  const haproxy = c.haproxy ?? haproxySchema.parse({});
  return {
    ...c,
    peer: {
      ...c.peer,
      postgresPort: c.peer.postgresPort ?? c.postgres.port,
      healthPort: c.peer.healthPort ?? c.health.port,
    },
    health: { ...c.health, staleMs: c.health.staleMs ?? 3 * c.health.refreshMs },
    dcs: {
      cluster,
      etcd: { ...c.dcs.etcd, prefix: c.dcs.etcd.prefix ?? `/chef-ha/${cluster}` },
    },
    haproxy: {
      ...haproxy,
      peerChefApiPort: haproxy.peerChefApiPort ?? haproxy.chefApiPort,
      configured: c.haproxy !== undefined,
    },
    postgres: {
      ...c.postgres,
      bindir: c.postgres.bindir ?? `/usr/lib/postgresql/${v}/bin`,
      dataDir: c.postgres.dataDir ?? `/var/lib/postgresql/${v}/${c.postgres.cluster}`,
      confDir: c.postgres.confDir ?? `/etc/postgresql/${v}/${c.postgres.cluster}`,
      logFile: c.postgres.logFile ?? `/var/log/postgresql/postgresql-${v}-${c.postgres.cluster}.log`,
    },
  };
}

/**
 * Parses the text of a config file.
 * @throws ConfigError for invalid JSON (with the position) or an invalid configuration.
 */
export function parseConfigText(text: string, path: string): Config {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(
      `${path} is not valid JSON: ${error instanceof Error ? error.message : String(error)}`,
      [],
      'fix the JSON syntax (a trailing comma or a missing quote is the usual cause)',
    );
  }
  return parseConfig(raw, path);
}

/** Where the config file is: --config, then CHEF_HA_CONFIG, then the default. */
export function resolveConfigPath(flag: string | undefined): string {
  return flag ?? process.env['CHEF_HA_CONFIG'] ?? DEFAULT_CONFIG_PATH;
}

/** Converts a node name to a PostgreSQL identifier usable as slot name and application_name. */
export function slotNameFor(name: string): string {
  return `chef_ha_${name.replace(/-/g, '_')}`;
}
