/**
 * Read-only facts about this node and its peer, gathered once per command. Planners decide from this
 * snapshot and never query again halfway (STYLE.md B3).
 */
import * as path from 'node:path';
import type { Config } from './config.js';
import type { LocalPgTarget } from '../ports/index.js';
import { SqlError } from '../ports/postgres.js';
import type { CommandContext } from './context.js';
import { embeddedTarget, localTarget, peerTarget, stagingDataDir, statePaths } from './context.js';
import { describeError } from './errors.js';
import { featuresFor, majorFromVersionNum, type PgFeatures } from '../pg/version.js';
import {
  CHEF_DATA_QUERY,
  SLOTS_QUERY,
  WAL_RECEIVER_QUERY,
  currentTimelineQuery,
  databaseExistsQuery,
  replicationQuery,
  roleExistsQuery,
  serverStateQuery,
  settingsQuery,
} from '../pg/queries.js';
import { quoteLiteral } from '../pg/conninfo.js';
import type { RecipeIdentity } from '../chef/recipe.js';
import { identifyRecipe } from '../chef/recipe.js';
import { parseDegradedRecord, type DegradedRecord } from '../monitor/decide.js';
import {
  autoConfPath,
  chefHaConfPath,
  chefServerRbPath,
  guardDropInPath,
  pgHbaPath,
  postgresqlConfPath,
  recipePath,
} from '../chef/paths.js';

export interface ReplicationRow {
  readonly application_name: string;
  readonly client_addr: string | null;
  readonly state: string;
  readonly sync_state: string;
  readonly sent_lsn: string | null;
  readonly flush_lsn: string | null;
  readonly replay_lsn: string | null;
  readonly lag_bytes: number | null;
  readonly replay_lag_s: number | null;
}

export interface WalReceiverRow {
  readonly status: string;
  readonly sender_host: string | null;
  readonly sender_port: number | null;
  readonly received_tli: number | null;
  readonly latest_end_lsn: string | null;
  readonly last_msg_age_s: number | null;
}

/** What a running server says about itself. */
export interface ServerFacts {
  readonly versionNum: number;
  readonly major: string;
  readonly inRecovery: boolean;
  readonly timeline: number | null;
  readonly currentLsn: string | null;
  readonly receiveLsn: string | null;
  readonly replayLsn: string | null;
  readonly replayAgeS: number | null;
  /** null before 9.6 (no pg_control_system()). */
  readonly systemIdentifier: string | null;
  readonly synchronousStandbyNames: string;
  readonly readOnlyDefault: boolean;
  readonly dataDirectory: string;
  readonly replication: readonly ReplicationRow[];
  readonly walReceiver: WalReceiverRow | null;
}

export interface LocalPgFacts {
  readonly running: boolean;
  readonly error?: string;
  readonly server?: ServerFacts;
  readonly settings: Readonly<Record<string, { readonly setting: string; readonly pendingRestart: boolean }>>;
  readonly replicationRoleExists: boolean;
  readonly slots: readonly { readonly slot_name: string; readonly active: boolean }[];
  readonly database?: { readonly sizeBytes: number };
  /** Chef objects beyond the bootstrap rows, per table. */
  readonly chefData: Readonly<Record<string, number>>;
  /** Sessions of chef-server's SQL user (erchef's pool) on this server. */
  readonly chefSessions?: number;
}

export interface LocalFacts {
  readonly pg: LocalPgFacts;
  readonly dataDir: {
    readonly exists: boolean;
    readonly empty: boolean;
    readonly pgVersion?: string;
    readonly standbySignal: boolean;
    readonly recoveryConf: boolean;
    readonly autoConf?: string;
  };
  readonly files: {
    readonly chefHaConf?: string;
    readonly pgHba?: string;
    readonly postgresqlConf?: string;
    readonly chefServerRb?: string;
    /** The pre-start guard's systemd drop-in, as installed. */
    readonly guardDropIn?: string;
  };
  readonly systemdUnitDirExists: boolean;
  readonly recipe: RecipeIdentity & { readonly path: string };
  readonly recordedOriginalSha256?: string;
  readonly binaries: Readonly<Record<string, boolean>>;
  readonly ctlExecutable: boolean;
  readonly etcDirExists: boolean;
  readonly freeBytes: number;
  readonly secretPresent: boolean;
  /**
   * An interrupted base backup: `copy` while setup-slave made the copy beside the untouched data
   * directory, `swap` once the copy was complete and the data directories were being exchanged,
   * `in-place` when rejoin's fallback copied into the data directory itself (a partial copy is there).
   */
  readonly basebackupPhase?: 'copy' | 'swap' | 'in-place';
  /** The staging directory of a base backup exists (stagingDataDir). */
  readonly stagingExists: boolean;
  /** The last reindex setup-slave started in the background, if any. */
  readonly reindexJob?: ReindexJob;
  /** A failover to this node started and has not finished. */
  readonly failoverInProgress: boolean;
  readonly fenced?: { readonly at: string; readonly reason: string };
  /** The monitor switched this primary to asynchronous (degraded.json). */
  readonly degraded?: DegradedRecord;
  readonly osUserKnown: boolean;
  readonly embedded: {
    readonly running: boolean;
    readonly hasChefDatabase: boolean;
    readonly chefData: Readonly<Record<string, number>>;
  };
}

export interface PeerFacts {
  readonly reachable: boolean;
  readonly error?: string;
  readonly server?: ServerFacts;
  readonly slots: readonly { readonly slot_name: string; readonly active: boolean }[];
}

export interface PairFacts {
  readonly local: LocalFacts;
  readonly peer: PeerFacts;
  readonly gatheredAt: number;
}

interface StateRow {
  version_num: number;
  in_recovery: boolean;
  checkpoint_timeline: number;
  current_lsn: string | null;
  receive_lsn: string | null;
  replay_lsn: string | null;
  replay_age_s: number | null;
  system_identifier: string | null;
  synchronous_standby_names: string;
  default_transaction_read_only: string;
  data_directory: string;
}

async function safe<T>(fn: () => Promise<T>, fallback: T): Promise<T> {
  try {
    return await fn();
  } catch {
    return fallback;
  }
}

/** One statement that returns every server fact as JSON columns (one round trip). */
function combinedQuery(f: PgFeatures, extras: Readonly<Record<string, string>>): string {
  const parts: [string, string][] = [
    ['version_num', "current_setting('server_version_num')::int"],
    ['state', `(SELECT row_to_json(s) FROM (${serverStateQuery(f)}) s)`],
    ['timeline', `(SELECT row_to_json(t) FROM (${currentTimelineQuery(f)}) t)`],
    ['replication', `(SELECT coalesce(json_agg(r), '[]'::json) FROM (${replicationQuery(f)}) r)`],
    [
      'wal_receiver',
      f.controlFunctions ? `(SELECT row_to_json(w) FROM (${WAL_RECEIVER_QUERY}) w LIMIT 1)` : 'NULL::json',
    ],
    ...Object.entries(extras).map(([k, sql]): [string, string] => [
      k,
      `(SELECT coalesce(json_agg(x), '[]'::json) FROM (${sql}) x)`,
    ]),
  ];
  return `SELECT ${parts.map(([k, v]) => `${v} AS ${k}`).join(',\n       ')}`;
}

interface CombinedRow {
  version_num: number;
  state: StateRow | null;
  timeline: { timeline: number | null } | null;
  replication: ReplicationRow[];
  wal_receiver: WalReceiverRow | null;
  [extra: string]: unknown;
}

/**
 * Reads the server facts through any query function (local psql or peer TCP), in one round trip when
 * the configured major is right (otherwise the server's own version decides and it asks again).
 * @throws whatever the query function throws when the server does not answer.
 */
export async function readServer(
  query: <T>(sql: string) => Promise<T[]>,
  configuredVersion: string,
  extrasFor: (f: PgFeatures) => Readonly<Record<string, string>>,
): Promise<{ server: ServerFacts; extras: Readonly<Record<string, unknown>> }> {
  let f = featuresFor(configuredVersion);
  let row: CombinedRow | undefined;
  try {
    row = (await query<CombinedRow>(combinedQuery(f, extrasFor(f))))[0];
  } catch (error) {
    // A server of another major may refuse the combined query: ask it its version. A server that was
    // not reached would only make the version query wait out the connect timeout a second time (a
    // partitioned peer held every failover for twice the timeout).
    if (error instanceof SqlError && !error.serverAnswered) {
      throw error;
    }
    row = undefined;
  }
  const versionNum =
    row?.version_num ??
    (await query<{ v: number }>("SELECT current_setting('server_version_num')::int AS v"))[0]?.v ??
    0;
  const major = majorFromVersionNum(versionNum);
  const actual = featuresFor(major);
  const sameFeatures = JSON.stringify({ ...actual, major: '' }) === JSON.stringify({ ...f, major: '' });
  if (!row || !sameFeatures) {
    f = actual;
    row = (await query<CombinedRow>(combinedQuery(f, extrasFor(f))))[0];
  }
  const state = row?.state;
  if (!row || !state) {
    throw new Error('the server returned no state row');
  }
  return {
    server: {
      versionNum,
      major,
      inRecovery: state.in_recovery,
      timeline: row.timeline?.timeline ?? state.checkpoint_timeline,
      currentLsn: state.current_lsn,
      receiveLsn: state.receive_lsn,
      replayLsn: state.replay_lsn,
      replayAgeS: state.replay_age_s,
      systemIdentifier: state.system_identifier,
      synchronousStandbyNames: state.synchronous_standby_names,
      readOnlyDefault: state.default_transaction_read_only === 'on',
      dataDirectory: state.data_directory,
      replication: row.replication,
      walReceiver: state.in_recovery ? row.wal_receiver : null,
    },
    extras: row,
  };
}

async function gatherLocalPg(ctx: CommandContext): Promise<LocalPgFacts> {
  const { pg } = ctx.ports;
  const config = ctx.config;
  const target = localTarget(config);
  const query = <T>(sql: string): Promise<T[]> => pg.queryLocal<T>(target, 'postgres', sql);
  let read: Awaited<ReturnType<typeof readServer>>;
  try {
    read = await readServer(query, config.postgres.version, (f) => ({
      settings: settingsQuery(f),
      role: roleExistsQuery(quoteLiteral(config.replication.user)),
      slots: f.replicationSlots ? SLOTS_QUERY : 'SELECT NULL::text AS slot_name, false AS active WHERE false',
      db: databaseExistsQuery(quoteLiteral(config.chefServer.database)),
      chef_sessions: `SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = ${quoteLiteral(config.chefServer.sqlUser)}`,
    }));
  } catch (error) {
    return {
      running: false,
      error: describeError(error),
      settings: {},
      replicationRoleExists: false,
      slots: [],
      chefData: {},
    };
  }
  const { server, extras } = read;
  const settingsRows = extras['settings'] as { name: string; setting: string; pending_restart: boolean }[];
  const settings: Record<string, { setting: string; pendingRestart: boolean }> = {};
  for (const row of settingsRows) {
    settings[row.name] = { setting: row.setting, pendingRestart: row.pending_restart };
  }
  const role = extras['role'] as { rolname: string }[];
  const slots = extras['slots'] as { slot_name: string; active: boolean }[];
  const db = extras['db'] as { size_bytes: number | string }[];
  const chefSessions = (extras['chef_sessions'] as { n: number }[] | undefined)?.[0]?.n ?? 0;
  const chefData = db.length > 0 ? await readChefData(ctx, target) : {};
  const dbRow = db[0];
  return {
    running: true,
    server,
    settings,
    replicationRoleExists: role.length > 0,
    slots,
    ...(dbRow ? { database: { sizeBytes: Number(dbRow.size_bytes) } } : {}),
    chefData,
    chefSessions,
  };
}

async function gatherEmbedded(ctx: CommandContext): Promise<LocalFacts['embedded']> {
  const { pg, files } = ctx.ports;
  const config = ctx.config;
  const e = config.chefServer.embeddedPostgres;
  if (!(await files.exists(path.join(e.dataDir, 'PG_VERSION')))) {
    return { running: false, hasChefDatabase: false, chefData: {} };
  }
  const target = embeddedTarget(config);
  try {
    const db = await pg.queryLocal<{ datname: string }>(
      target,
      'postgres',
      databaseExistsQuery(quoteLiteral(config.chefServer.database)),
      5_000,
    );
    if (db.length === 0) {
      return { running: true, hasChefDatabase: false, chefData: {} };
    }
    return { running: true, hasChefDatabase: true, chefData: await readChefData(ctx, target) };
  } catch {
    return { running: false, hasChefDatabase: false, chefData: {} };
  }
}

/** Chef objects beyond the bootstrap rows, per table, in a cluster's Chef database ({} when unreadable). */
async function readChefData(ctx: CommandContext, target: LocalPgTarget): Promise<Record<string, number>> {
  const rows = await safe(
    () =>
      ctx.ports.pg.queryLocal<{ name: string; rows: number | string }>(
        target,
        ctx.config.chefServer.database,
        CHEF_DATA_QUERY,
        5_000,
      ),
    [],
  );
  return Object.fromEntries(rows.map((r) => [r.name, Number(r.rows)]));
}

/** The fence record of this node, if it was fenced (an unreadable one still counts as fenced). */
async function readFenceRecord(ctx: CommandContext): Promise<{ at: string; reason: string } | undefined> {
  const text = await safe(() => ctx.ports.files.readTextIfExists(statePaths(ctx.config).fence), undefined);
  if (!text) {
    return undefined;
  }
  try {
    return JSON.parse(text) as { at: string; reason: string };
  } catch {
    return { at: 'unknown', reason: 'unreadable fence record' };
  }
}

export interface ReindexJob {
  readonly startedAt: string;
  readonly log: string;
  /** running; ok or failed with its exit code; vanished: it ended without recording a status (killed). */
  readonly state: 'running' | 'ok' | 'failed' | 'vanished';
  readonly exitCode?: number;
}

async function readReindexJob(ctx: CommandContext): Promise<ReindexJob | undefined> {
  const text = await safe(
    () => ctx.ports.files.readTextIfExists(statePaths(ctx.config).reindexJob),
    undefined,
  );
  if (text === undefined) {
    return undefined;
  }
  let job: { pid?: unknown; log?: unknown; startedAt?: unknown };
  try {
    job = JSON.parse(text) as typeof job;
  } catch {
    return undefined;
  }
  const log = typeof job.log === 'string' ? job.log : '';
  const startedAt = typeof job.startedAt === 'string' ? job.startedAt : 'unknown';
  const exitText = await safe(() => ctx.ports.files.readTextIfExists(`${log}.exit`), undefined);
  if (exitText !== undefined && /^\d+$/.test(exitText.trim())) {
    const exitCode = Number(exitText.trim());
    return { startedAt, log, state: exitCode === 0 ? 'ok' : 'failed', exitCode };
  }
  const alive = typeof job.pid === 'number' && ctx.ports.proc.isAlive(job.pid);
  return { startedAt, log, state: alive ? 'running' : 'vanished' };
}

/** The phase an interrupted base backup recorded (a marker without a readable phase counts as `copy`). */
async function readBasebackupPhase(ctx: CommandContext): Promise<'copy' | 'swap' | 'in-place' | undefined> {
  const text = await safe(
    () => ctx.ports.files.readTextIfExists(statePaths(ctx.config).basebackupMarker),
    undefined,
  );
  if (text === undefined) {
    return undefined;
  }
  try {
    const phase = (JSON.parse(text) as { phase?: unknown }).phase;
    return phase === 'swap' || phase === 'in-place' ? phase : 'copy';
  } catch {
    return 'copy';
  }
}

/** Facts of this node. Never changes anything. */
export async function gatherLocalFacts(ctx: CommandContext): Promise<LocalFacts> {
  const { files } = ctx.ports;
  const config = ctx.config;
  const paths = statePaths(config);
  const recordText = await safe(() => files.readTextIfExists(paths.recipeRecord), undefined);
  let recordedOriginalSha256: string | undefined;
  try {
    recordedOriginalSha256 = recordText ? (JSON.parse(recordText) as { sha256?: string }).sha256 : undefined;
  } catch {
    recordedOriginalSha256 = undefined;
  }
  const recipeFile = recipePath(config);
  const recipeBytes = (await files.exists(recipeFile)) ? await files.readBytes(recipeFile) : undefined;
  const recipe = {
    ...identifyRecipe(recipeBytes, config.chefServer.originalRecipeSha256, recordedOriginalSha256),
    path: recipeFile,
  };
  const dataDir = config.postgres.dataDir;
  const dataDirExists = await safe(() => files.exists(dataDir), false);
  const pgVersion = (
    await safe(() => files.readTextIfExists(path.join(dataDir, 'PG_VERSION')), undefined)
  )?.trim();
  const autoConf = await safe(() => files.readTextIfExists(autoConfPath(config)), undefined);
  const binaries: Record<string, boolean> = {};
  for (const bin of ['pg_ctl', 'pg_basebackup', 'pg_rewind', 'psql', 'pg_dump', 'pg_restore']) {
    binaries[bin] = await files.canExecute(path.join(config.postgres.bindir, bin));
  }
  const fenced = await readFenceRecord(ctx);
  const basebackupPhase = await readBasebackupPhase(ctx);
  const reindexJob = await readReindexJob(ctx);
  const degraded = parseDegradedRecord(await safe(() => files.readTextIfExists(paths.degraded), undefined));
  const [pgFacts, embedded] = await Promise.all([gatherLocalPg(ctx), gatherEmbedded(ctx)]);
  const chefHaConf = await safe(() => files.readTextIfExists(chefHaConfPath(config)), undefined);
  const pgHba = await safe(() => files.readTextIfExists(pgHbaPath(config)), undefined);
  const postgresqlConf = await safe(() => files.readTextIfExists(postgresqlConfPath(config)), undefined);
  const chefServerRb = await safe(() => files.readTextIfExists(chefServerRbPath(config)), undefined);
  const guardDropIn = await safe(() => files.readTextIfExists(guardDropInPath(config)), undefined);
  return {
    pg: pgFacts,
    dataDir: {
      exists: dataDirExists,
      empty: dataDirExists ? await safe(() => files.isEmptyDir(dataDir), false) : true,
      ...(pgVersion ? { pgVersion } : {}),
      standbySignal: await safe(() => files.exists(path.join(dataDir, 'standby.signal')), false),
      recoveryConf: await safe(() => files.exists(path.join(dataDir, 'recovery.conf')), false),
      ...(autoConf === undefined ? {} : { autoConf }),
    },
    files: {
      ...(chefHaConf === undefined ? {} : { chefHaConf }),
      ...(pgHba === undefined ? {} : { pgHba }),
      ...(postgresqlConf === undefined ? {} : { postgresqlConf }),
      ...(chefServerRb === undefined ? {} : { chefServerRb }),
      ...(guardDropIn === undefined ? {} : { guardDropIn }),
    },
    systemdUnitDirExists: await safe(() => files.exists(config.postgres.systemdUnitDir), false),
    recipe,
    ...(recordedOriginalSha256 ? { recordedOriginalSha256 } : {}),
    binaries,
    ctlExecutable: await files.canExecute(config.chefServer.ctl),
    etcDirExists: await files.exists(config.chefServer.etcDir),
    freeBytes: await safe(() => files.freeBytes(dataDir), Number.MAX_SAFE_INTEGER),
    secretPresent: (await ctx.secrets.read('replication')) !== undefined,
    ...(basebackupPhase ? { basebackupPhase } : {}),
    stagingExists: await safe(() => files.exists(stagingDataDir(config)), false),
    ...(reindexJob ? { reindexJob } : {}),
    failoverInProgress: await safe(() => files.exists(paths.failoverMarker), false),
    ...(fenced ? { fenced } : {}),
    ...(degraded ? { degraded } : {}),
    osUserKnown: (await files.lookupUser(config.postgres.osUser)) !== undefined,
    embedded,
  };
}

/** Facts of the peer over TCP with the replication role; unreachable without a secret. */
export async function gatherPeerFacts(ctx: CommandContext, passwordOverride?: string): Promise<PeerFacts> {
  const config: Config = ctx.config;
  const password = passwordOverride ?? (await ctx.secrets.read('replication'));
  if (!password) {
    return {
      reachable: false,
      error: 'no replication secret yet (run setup-master or setup-slave first)',
      slots: [],
    };
  }
  const target = peerTarget(config, password);
  const query = <T>(sql: string): Promise<T[]> => ctx.ports.pg.queryPeer<T>(target, sql);
  try {
    const { server, extras } = await readServer(query, config.postgres.version, (f) =>
      f.replicationSlots ? { slots: SLOTS_QUERY } : {},
    );
    const slots = (extras['slots'] as { slot_name: string; active: boolean }[] | undefined) ?? [];
    return { reachable: true, server, slots };
  } catch (error) {
    return { reachable: false, error: describeError(error), slots: [] };
  }
}

/** Both nodes, gathered concurrently. */
export async function gatherPairFacts(ctx: CommandContext, passwordOverride?: string): Promise<PairFacts> {
  const [local, peer] = await Promise.all([gatherLocalFacts(ctx), gatherPeerFacts(ctx, passwordOverride)]);
  return { local, peer, gatheredAt: ctx.ports.clock.now() };
}

/** What `fence` needs: it runs over ssh while a failover waits, so it reads only this. */
export interface FenceFacts {
  readonly running: boolean;
  readonly inRecovery: boolean | undefined;
  readonly standbySignal: boolean;
  readonly recoveryConf: boolean;
  readonly fenced?: { readonly at: string; readonly reason: string };
}

/** The subset of LocalFacts that planFence reads. Pure. */
export function toFenceFacts(local: LocalFacts): FenceFacts {
  return {
    running: local.pg.running,
    inRecovery: local.pg.server?.inRecovery,
    standbySignal: local.dataDir.standbySignal,
    recoveryConf: local.dataDir.recoveryConf,
    ...(local.fenced ? { fenced: local.fenced } : {}),
  };
}

/** Facts for `fence`: one query and three file checks. Never changes anything. */
export async function gatherFenceFacts(ctx: CommandContext): Promise<FenceFacts> {
  const { files, pg } = ctx.ports;
  const config = ctx.config;
  const dataDir = config.postgres.dataDir;
  let running = false;
  let inRecovery: boolean | undefined;
  try {
    const rows = await pg.queryLocal<{ r: boolean }>(
      localTarget(config),
      'postgres',
      'SELECT pg_is_in_recovery() AS r',
      5_000,
    );
    running = true;
    inRecovery = rows[0]?.r;
  } catch {
    running = false;
  }
  const fenced = await readFenceRecord(ctx);
  return {
    running,
    inRecovery,
    standbySignal: await safe(() => files.exists(path.join(dataDir, 'standby.signal')), false),
    recoveryConf: await safe(() => files.exists(path.join(dataDir, 'recovery.conf')), false),
    ...(fenced ? { fenced } : {}),
  };
}
