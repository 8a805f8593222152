/**
 * The compound steps of rejoin: keep the old primary's WAL beyond the divergence point (the writes a
 * failover lost, for inspection with pg_waldump), and rewind with a fresh base backup as the fallback.
 * Reached only through executePlan (so never in a dry run).
 */
import * as path from 'node:path';
import type { CommandContext } from './context.js';
import { CommandError } from '../ports/index.js';
import { readLocalControlData } from './control.js';
import {
  isCleanShutdown,
  parseRewindOutput,
  parseWaldump,
  walFileName,
  walFilesFrom,
} from '../pg/controldata.js';
import { formatBytes, lsnDiff } from '../pg/lsn.js';

type Args = Readonly<Record<string, unknown>>;

/** What rejoin found out about the writes the failover discarded; written as divergence.json. */
export interface DivergenceRecord {
  readonly divergedAt: string | null;
  readonly timeline: number;
  /** End of this node's WAL on the old timeline, as pg_waldump read it. */
  readonly endLsn: string | null;
  /** Bytes of WAL after the divergence point (writes the new primary never had), when known. */
  readonly discardedBytes: number | null;
  readonly records: number | null;
  readonly savedIn: string | null;
  readonly files: readonly string[];
}

function str(args: Args, key: string): string {
  const v = args[key];
  if (typeof v !== 'string') {
    throw new Error(`internal: action argument ${key} missing`);
  }
  return v;
}

/** Moves a tree: rename on the same filesystem, otherwise copy then remove. */
async function moveTree(ctx: CommandContext, from: string, to: string): Promise<void> {
  const { files, shell } = ctx.ports;
  await files.mkdirp(path.dirname(to), 0o700);
  const [a, b] = [await files.stat(from), await files.stat(path.dirname(to))];
  if (a && b && a.dev === b.dev) {
    await files.rename(from, to);
    return;
  }
  const r = await shell.run(['cp', '-a', from, to], { timeoutMs: 3_600_000 });
  if (r.exitCode !== 0) {
    throw new CommandError(`cp -a ${from} ${to}`, r.exitCode, r.stderr, `exited ${r.exitCode}`);
  }
  await files.removeTree(from);
}

/**
 * Copies this node's WAL segments from the divergence point on into the backup folder, reads them with
 * pg_waldump to find where the old timeline ends, and records the divergence.
 */
async function saveDivergedWal(ctx: CommandContext, args: Args): Promise<string> {
  const { files, shell } = ctx.ports;
  const pgc = ctx.config.postgres;
  const to = str(args, 'to');
  const recordPath = str(args, 'record');
  const timeline = Number(args['timeline']);
  const divergedAt = typeof args['divergedAt'] === 'string' ? args['divergedAt'] : null;
  const walDir = path.join(pgc.dataDir, 'pg_wal');
  const write = async (rec: DivergenceRecord): Promise<void> => {
    await files.mkdirp(path.dirname(recordPath), 0o700);
    await files.writeAtomic(recordPath, `${JSON.stringify(rec, null, 2)}\n`, 0o600);
  };
  if (divergedAt === null) {
    await write({
      divergedAt,
      timeline,
      endLsn: null,
      discardedBytes: null,
      records: null,
      savedIn: null,
      files: [],
    });
    return 'the divergence point is unknown (the new primary has no history for this timeline)';
  }
  const control = await readLocalControlData(ctx);
  const segmentBytes = control?.segmentBytes ?? 16 * 1024 * 1024;
  const names = (await files.exists(walDir)) ? await files.listDir(walDir) : [];
  const wanted = walFilesFrom(names, timeline, divergedAt, segmentBytes);
  if (wanted.length === 0) {
    await write({
      divergedAt,
      timeline,
      endLsn: null,
      discardedBytes: null,
      records: null,
      savedIn: null,
      files: [],
    });
    return `no WAL of timeline ${timeline} from ${divergedAt} on is left in ${walDir}`;
  }
  await files.mkdirp(to, 0o700);
  const cp = await shell.run(['cp', '-a', ...wanted.map((n) => path.join(walDir, n)), `${to}/`], {
    timeoutMs: 600_000,
  });
  if (cp.exitCode !== 0) {
    throw new CommandError(`cp -a <WAL segments> ${to}/`, cp.exitCode, cp.stderr, `exited ${cp.exitCode}`);
  }
  let endLsn: string | null = null;
  let records: number | null = null;
  // pg_waldump needs the segment holding the divergence point; without it the amount is unknown.
  if (wanted[0]?.slice(0, 24) === walFileName(timeline, divergedAt, segmentBytes)) {
    const dump = await shell.run(
      [`${pgc.bindir}/pg_waldump`, '--stats', '-p', to, '-s', divergedAt, '-t', String(timeline)],
      { timeoutMs: 300_000, env: { LC_ALL: 'C' } },
    );
    const summary = parseWaldump(`${dump.stdout}\n${dump.stderr}`);
    endLsn = summary.endLsn ?? null;
    records = summary.records ?? null;
  }
  const discardedBytes = endLsn ? lsnDiff(endLsn, divergedAt) : null;
  await write({ divergedAt, timeline, endLsn, discardedBytes, records, savedIn: to, files: wanted });
  const amount =
    discardedBytes === null
      ? 'an unknown amount of WAL'
      : `${formatBytes(discardedBytes)} of WAL${records !== null ? ` (${records} records)` : ''}`;
  return `timelines split at ${divergedAt} (timeline ${timeline}): ${amount} after it are discarded; kept in ${to} (pg_waldump -p ${to} -s ${divergedAt} -t ${timeline})`;
}

/**
 * pg_rewind needs a cleanly shut down target. It would recover a crashed one itself in single-user mode,
 * but that reads postgresql.conf from the data directory, which a Debian layout keeps elsewhere: so the
 * crash recovery runs here, with the real config file. Returns why a rewind is impossible, if it is.
 */
async function finishCrashRecovery(ctx: CommandContext): Promise<string | undefined> {
  const pgc = ctx.config.postgres;
  const control = await readLocalControlData(ctx);
  if (!control) {
    return `no readable cluster in ${pgc.dataDir}`;
  }
  if (isCleanShutdown(control)) {
    return undefined;
  }
  // Single-user mode refuses standby mode: the fence's signal file steps aside for the recovery only.
  const signal = path.join(pgc.dataDir, 'standby.signal');
  const held = `${signal}.chef-ha-rejoin`;
  const hasSignal = await ctx.ports.files.exists(signal);
  if (hasSignal) {
    await ctx.ports.files.rename(signal, held);
  }
  let r;
  try {
    r = await ctx.ports.shell.run(
      [
        `${pgc.bindir}/postgres`,
        '--single',
        '-F',
        '-D',
        pgc.dataDir,
        '-c',
        `config_file=${pgc.confDir}/postgresql.conf`,
        'template1',
      ],
      { user: pgc.osUser, input: '', timeoutMs: 3_600_000 },
    );
  } finally {
    if (hasSignal) {
      await ctx.ports.files.rename(held, signal);
    }
  }
  if (r.exitCode !== 0) {
    const last = r.stderr.trim().split('\n').filter(Boolean).slice(-2).join(' / ');
    ctx.reporter.warn(
      `crash recovery of ${pgc.dataDir} failed (${last}); falling back to a fresh base backup`,
    );
    return `crash recovery before pg_rewind failed (exit ${r.exitCode}: ${last})`;
  }
  return undefined;
}

/**
 * pg_rewind from the new primary; when it is impossible or fails, the data directory is moved into the
 * backup folder and replaced by a fresh pg_basebackup (as setup-slave does).
 */
async function rewind(ctx: CommandContext, args: Args): Promise<string> {
  const { shell, files } = ctx.ports;
  const pgc = ctx.config.postgres;
  const env = args['env'] as Readonly<Record<string, string>>;
  const marker = str(args, 'marker');
  const record = async (method: 'rewind' | 'basebackup', detail: string): Promise<void> => {
    const file = str(args, 'record');
    await files.mkdirp(path.dirname(file), 0o700);
    await files.writeAtomic(file, `${JSON.stringify({ method, detail }, null, 2)}\n`, 0o600);
  };
  let why = typeof args['basebackupReason'] === 'string' ? args['basebackupReason'] : undefined;
  if (why === undefined) {
    why = await finishCrashRecovery(ctx);
  }
  if (why === undefined) {
    const argv = args['rewindArgv'] as [string, ...string[]];
    const r = await shell.run(argv, { user: pgc.osUser, env, timeoutMs: 6 * 3_600_000 });
    const out = `${r.stdout}\n${r.stderr}`;
    if (r.exitCode === 0) {
      const s = parseRewindOutput(out);
      const note = s.noRewindRequired
        ? 'pg_rewind: no rewind required (this node had nothing the new primary lacks)'
        : `pg_rewind done${s.divergedAt ? `: servers diverged at ${s.divergedAt} on timeline ${s.timeline ?? '?'}` : ''}`;
      await record('rewind', note);
      return note;
    }
    const last = out.trim().split('\n').filter(Boolean).slice(-2).join(' / ');
    why = `pg_rewind failed (exit ${r.exitCode}: ${last})`;
    ctx.reporter.warn(`${why}; falling back to a fresh base backup`);
  }
  await files.mkdirp(path.dirname(marker), 0o700);
  await files.writeAtomic(marker, `${JSON.stringify({ startedBy: 'rejoin' })}\n`, 0o600);
  if (await files.exists(pgc.dataDir)) {
    await moveTree(ctx, pgc.dataDir, str(args, 'moveTo'));
  }
  const bb = args['basebackupArgv'] as [string, ...string[]];
  const r = await shell.run(bb, {
    user: pgc.osUser,
    env: { ...env, PGAPPNAME: str(args, 'applicationName') },
    timeoutMs: 6 * 3_600_000,
    onStderr: (text) => {
      ctx.reporter.progress(text);
    },
  });
  if (r.exitCode !== 0) {
    throw new CommandError(bb.join(' '), r.exitCode, r.stderr, `exited ${r.exitCode}`);
  }
  await files.remove(marker);
  await record('basebackup', why);
  return `fresh base backup (${why}); the old data directory is in ${str(args, 'moveTo')}`;
}

/** Runs one rejoin action. @throws whatever its port calls throw. */
export async function runRejoinAction(
  ctx: CommandContext,
  action: 'save-diverged-wal' | 'rewind',
  args: Args,
): Promise<string> {
  return action === 'save-diverged-wal' ? saveDivergedWal(ctx, args) : rewind(ctx, args);
}
