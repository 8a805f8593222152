/**
 * What every command receives (STYLE.md B4): config, ports, reporter, confirmation and the cancel signal,
 * plus the helpers that turn config into connection targets and keep secrets and the lock.
 */
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Config } from './config.js';
import type { Reporter } from './reporter.js';
import type { LocalPgTarget, PeerPgTarget, Ports } from '../ports/index.js';
import type { SecretName } from './plan.js';
import { RefusedError } from './errors.js';

export interface GlobalOptions {
  readonly json: boolean;
  readonly verbose: boolean;
  readonly yes: boolean;
  readonly dryRun: boolean;
  readonly configPath: string;
}

export interface CommandContext {
  readonly config: Config;
  readonly ports: Ports;
  readonly reporter: Reporter;
  readonly options: GlobalOptions;
  readonly signal: AbortSignal;
  /** Asks the operator; resolves true to go on. Refuses without a TTY unless --yes. */
  readonly confirm: (question: string) => Promise<boolean>;
  readonly secrets: SecretStore;
}

/** The local cluster as the superuser over the socket. */
export function localTarget(config: Config): LocalPgTarget {
  return {
    bindir: config.postgres.bindir,
    socketDir: config.postgres.socketDir,
    port: config.postgres.port,
    osUser: config.postgres.osUser,
    superuser: config.postgres.superuser,
  };
}

/** The embedded (omnibus) cluster chef-server ran on before chef-ha. */
export function embeddedTarget(config: Config): LocalPgTarget {
  const e = config.chefServer.embeddedPostgres;
  return { bindir: e.bindir, socketDir: e.socketDir, port: e.port, osUser: e.osUser, superuser: e.superuser };
}

/** The peer over TCP as the replication role. */
export function peerTarget(config: Config, password: string, connectTimeoutMs?: number): PeerPgTarget {
  return {
    host: config.peer.address,
    port: config.peer.postgresPort,
    user: config.replication.user,
    password,
    database: 'postgres',
    ...(connectTimeoutMs === undefined ? {} : { connectTimeoutMs }),
  };
}

/** Paths under the state directory. */
export function statePaths(config: Config): {
  secrets: string;
  backups: string;
  bundle: string;
  lock: string;
  recipeRecord: string;
  fence: string;
  basebackupMarker: string;
  failoverMarker: string;
  history: string;
  reindexJob: string;
  logs: string;
  /** Written by the monitor while the primary runs asynchronous after losing its sync standby. */
  degraded: string;
} {
  const s = config.stateDir;
  return {
    secrets: path.join(s, 'secrets'),
    backups: path.join(s, 'backups'),
    bundle: path.join(s, 'join-bundle.tar.gz'),
    lock: path.join(s, 'chef-ha-ctl.lock'),
    recipeRecord: path.join(s, 'recipe-original.json'),
    fence: path.join(s, 'fenced.json'),
    basebackupMarker: path.join(s, 'basebackup-in-progress'),
    failoverMarker: path.join(s, 'failover-in-progress'),
    history: path.join(s, 'history.jsonl'),
    reindexJob: path.join(s, 'reindex.json'),
    logs: path.join(s, 'logs'),
    degraded: path.join(s, 'degraded.json'),
  };
}

/**
 * Where setup-slave's base backup is made while the old cluster still runs: beside the data directory,
 * on the same filesystem, so that putting it in place is a rename.
 */
export function stagingDataDir(config: Config): string {
  return `${config.postgres.dataDir}.chef-ha-incoming`;
}

/** Secrets live in files of mode 0600 under the state directory and are redacted from all output. */
export interface SecretStore {
  read(name: SecretName): Promise<string | undefined>;
  /** Creates the secret unless it exists; returns its value. */
  ensure(name: SecretName): Promise<string>;
  write(name: SecretName, value: string): Promise<void>;
  /** Every value loaded so far (for redaction). */
  known(): readonly string[];
}

/** The secret store over the files port. */
export function createSecretStore(config: Config, ports: Pick<Ports, 'files'>): SecretStore {
  const dir = statePaths(config).secrets;
  const loaded = new Set<string>();
  const file = (name: SecretName): string => path.join(dir, `${name}.password`);
  const store: SecretStore = {
    async read(name) {
      const text = await ports.files.readTextIfExists(file(name));
      const value = text?.trim();
      if (value) {
        loaded.add(value);
      }
      return value || undefined;
    },
    async ensure(name) {
      const existing = await store.read(name);
      if (existing) {
        return existing;
      }
      const value = randomBytes(24).toString('base64url');
      await store.write(name, value);
      return value;
    },
    async write(name, value) {
      loaded.add(value);
      await ports.files.mkdirp(config.stateDir, 0o700);
      await ports.files.mkdirp(dir, 0o700);
      await ports.files.writeAtomic(file(name), `${value}\n`, 0o600);
    },
    known: () => [...loaded],
  };
  return store;
}

interface LockRecord {
  readonly pid: number;
  readonly command: string;
  readonly started: string;
}

/**
 * Runs fn while holding the local lock file, so that two chef-ha-ctl runs cannot interleave. Commands
 * take it before gathering facts, so that a plan is never made from facts another run is changing.
 * A lock left by a dead process is taken over.
 * @throws RefusedError when another live chef-ha-ctl holds the lock.
 */
/** How long a command waits for the monitor's or the guard's short action to release the lock. */
export const AUTOMATIC_LOCK_WAIT_MS = 15_000;

function isAutomatic(command: string): boolean {
  return command === 'guard' || command.startsWith('monitor');
}

export async function withLock<T>(ctx: CommandContext, command: string, fn: () => Promise<T>): Promise<T> {
  if (ctx.options.dryRun) {
    // A dry run changes nothing, so it neither needs the lock nor may create the state directory.
    return fn();
  }
  const { files, proc } = ctx.ports;
  const lockPath = statePaths(ctx.config).lock;
  await files.mkdirp(ctx.config.stateDir, 0o700);
  const record: LockRecord = {
    pid: proc.pid,
    command,
    started: new Date(ctx.ports.clock.now()).toISOString(),
  };
  // The monitor and the guard hold the lock only for a short automatic action (a fence, a degrade): a
  // command that meets one of them waits for it instead of refusing the operator.
  const waitUntil = ctx.ports.clock.now() + AUTOMATIC_LOCK_WAIT_MS;
  for (let attempt = 0; attempt < 2; attempt += 1) {
    if (await files.createExclusive(lockPath, JSON.stringify(record), 0o600)) {
      try {
        return await fn();
      } finally {
        await files.remove(lockPath);
      }
    }
    const text = await files.readTextIfExists(lockPath);
    let holder: LockRecord | undefined;
    try {
      holder = text ? (JSON.parse(text) as LockRecord) : undefined;
    } catch {
      holder = undefined;
    }
    if (!holder) {
      // Unreadable: another run may be between creating the file and writing it. Only an old one is stale.
      const st = await files.stat(lockPath);
      if (st && ctx.ports.clock.now() - st.mtimeMs < 30_000) {
        throw new RefusedError(
          `another chef-ha-ctl is taking the lock ${lockPath}; nothing was changed`,
          undefined,
          'wait a moment and run the command again',
        );
      }
    }
    if (
      holder &&
      proc.isAlive(holder.pid) &&
      holder.pid !== proc.pid &&
      isAutomatic(holder.command) &&
      ctx.ports.clock.now() < waitUntil
    ) {
      await ctx.ports.clock.sleep(100, ctx.signal);
      attempt -= 1;
      continue;
    }
    if (holder && proc.isAlive(holder.pid) && holder.pid !== proc.pid) {
      throw new RefusedError(
        `another chef-ha-ctl holds the lock (pid ${holder.pid}, ${holder.command}, started ${holder.started}); nothing was changed`,
        undefined,
        `wait for it to finish; if no chef-ha-ctl runs, remove ${lockPath}`,
      );
    }
    // The holder is gone: the lock is stale.
    await files.remove(lockPath);
  }
  throw new RefusedError(`could not take the lock ${lockPath}`, undefined, 'try again');
}

/** A timestamped folder name for this run's backups. */
export function backupDirFor(config: Config, now: number): string {
  const stamp = new Date(now).toISOString().replace(/[:]/g, '').replace(/\..*$/, 'Z');
  return path.join(statePaths(config).backups, stamp);
}
