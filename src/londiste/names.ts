/**
 * Londiste naming and rendering, pure: node and job names, connect strings, ini views, file locations.
 * Every londiste file of a node lives under `londiste.dir` (readable and writable by the PostgreSQL OS
 * user, who runs pgqd and the worker).
 */
import * as path from 'node:path';
import type { Config } from '../core/config.js';
import { quoteLiteral } from '../pg/conninfo.js';

/** The Debian packages Londiste mode needs (Skytools 3, Python 3 port). */
export function londistePackages(major: string): readonly string[] {
  return [
    'pgqd',
    'python3-londiste',
    `postgresql-${major}-pgq3`,
    `postgresql-${major}-pgq-node`,
    `postgresql-${major}-londiste-sql`,
  ];
}

/** The exact command that installs the missing packages. */
export function aptInstallArgv(missing: readonly string[]): [string, ...string[]] {
  return ['apt-get', 'install', '-y', '--no-install-recommends', ...missing];
}

/** The cascade node name of a chef-ha node ("chef-a" → "chef_a"). */
export function londisteNodeName(name: string): string {
  return name.replace(/-/g, '_');
}

/** The worker's job name: its consumer name on the provider's queue, so it differs per node. */
export function jobNameFor(config: Config, name = config.node.name): string {
  return `${config.londiste.queue}_${londisteNodeName(name)}`;
}

/** Files of this node's daemons. */
export function londistePaths(config: Config): {
  dir: string;
  etc: string;
  log: string;
  pid: string;
  pgqdIni: string;
  workerIni: string;
  pgqdPid: string;
  workerPid: string;
  pgqdLog: string;
  workerLog: string;
  supervisorLog: string;
  supervisorPid: string;
} {
  const dir = config.londiste.dir;
  const job = jobNameFor(config);
  return {
    dir,
    etc: path.join(dir, 'etc'),
    log: path.join(dir, 'log'),
    pid: path.join(dir, 'pid'),
    pgqdIni: path.join(dir, 'etc', 'pgqd.ini'),
    workerIni: path.join(dir, 'etc', 'londiste.ini'),
    pgqdPid: path.join(dir, 'pid', 'pgqd.pid'),
    workerPid: path.join(dir, 'pid', `${job}.pid`),
    pgqdLog: path.join(dir, 'log', 'pgqd.log'),
    workerLog: path.join(dir, 'log', `${job}.log`),
    supervisorLog: path.join(dir, 'log', 'supervisor.log'),
    // The supervisor runs as root: its pid file is in the state directory.
    supervisorPid: path.join(config.stateDir, 'londiste-daemons.pid'),
  };
}

function conn(pairs: readonly (readonly [string, string | number])[]): string {
  return pairs
    .map(([k, v]) => {
      const s = String(v);
      return `${k}=${/^[A-Za-z0-9_./:-]+$/.test(s) ? s : `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`}`;
    })
    .join(' ');
}

/** This node's own database as the superuser over the socket: the ini `db` and pgqd's base_connstr. */
export function localConnstr(config: Config, database?: string): string {
  return conn([
    ...(database === undefined ? [] : [['dbname', database] as const]),
    ['host', config.postgres.socketDir],
    ['port', config.postgres.port],
    ['user', config.postgres.superuser],
  ]);
}

/**
 * The public location of a node, stored in pgq_node on every node and used by the other node and by
 * admin commands: TCP, the replication role, the password from the passfile (never inline).
 */
export function locationConnstr(config: Config, which: 'node' | 'peer'): string {
  const host = which === 'node' ? config.node.address : config.peer.address;
  const port = which === 'node' ? config.postgres.port : config.peer.postgresPort;
  return conn([
    ['dbname', config.chefServer.database],
    ['host', host],
    ['port', port],
    ['user', config.replication.user],
  ]);
}

/** Environment of every londiste/pgqd child: the passfile that holds the replication password. */
export function londisteEnv(config: Config): Record<string, string> {
  return { PGPASSFILE: config.postgres.passfile };
}

/** `londiste <ini> ARGS` as the PostgreSQL OS user. */
export function londisteArgv(config: Config, ...args: string[]): [string, ...string[]] {
  return ['londiste', londistePaths(config).workerIni, ...args];
}

/** Qualified names of the replicated tables. */
export function qualifiedTables(config: Config): string[] {
  return config.chefServer.tables.map((t) => `public.${t}`);
}

function seconds(ms: number): string {
  return String(ms / 1000);
}

/** The view of templates/pgqd.ini.hbs. */
export function pgqdIniView(config: Config, chefHaVersion: string): Record<string, string> {
  const p = londistePaths(config);
  return {
    chefHaVersion,
    nodeName: config.node.name,
    baseConnstr: localConnstr(config),
    database: config.chefServer.database,
    logFile: p.pgqdLog,
    pidFile: p.pgqdPid,
    tickerPeriodS: seconds(config.londiste.tickerPeriodMs),
  };
}

/** The view of templates/londiste.ini.hbs. */
export function workerIniView(config: Config, chefHaVersion: string): Record<string, string | number> {
  const p = londistePaths(config);
  return {
    chefHaVersion,
    nodeName: config.node.name,
    londisteNode: londisteNodeName(config.node.name),
    jobName: jobNameFor(config),
    db: localConnstr(config, config.chefServer.database),
    queue: config.londiste.queue,
    logFile: p.workerLog,
    pidFile: p.workerPid,
    loopDelayS: seconds(config.londiste.loopDelayMs),
    parallelCopies: config.londiste.parallelCopies,
    exceptionSleepS: seconds(config.londiste.exceptionSleepMs),
  };
}

/** The per-queue ticker settings (they live in the database and must be re-applied on a new root). */
export function queueSettings(config: Config): Record<string, string> {
  return {
    ticker_max_lag: `${config.londiste.tickerMaxLagMs} milliseconds`,
    ticker_idle_period: `${config.londiste.tickerIdlePeriodMs} milliseconds`,
  };
}

/** SQL that applies the queue ticker settings on a root. */
export function queueSettingsSql(config: Config): string {
  const q = quoteLiteral(config.londiste.queue);
  return Object.entries(queueSettings(config))
    .map(([k, v]) => `SELECT pgq.set_queue_config(${q}, ${quoteLiteral(k)}, ${quoteLiteral(v)});`)
    .join('\n');
}

/**
 * Grants on a node that is or may become root: the replication role reads the queue and the tables and
 * registers subscribers (the other node's worker and admin commands log in as it); the role chef-server
 * writes with fires pgq's triggers (pgq_writer).
 */
export function grantsSql(config: Config): string {
  const role = `"${config.replication.user}"`;
  const tables = config.chefServer.tables.map((t) => `public."${t}"`).join(', ');
  return [
    `GRANT pgq_admin, londiste_reader, londiste_writer TO ${role};`,
    // SELECT for the copy; UPDATE because `compare` and `repair` lock the root's table IN SHARE MODE.
    `GRANT SELECT, UPDATE ON ${tables} TO ${role};`,
    `GRANT pgq_writer TO "${config.chefServer.sqlUser}";`,
  ].join('\n');
}
