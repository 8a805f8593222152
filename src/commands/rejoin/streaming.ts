/** rejoin for streaming replication: gather → decide → plan → confirm → execute → report. */
import * as path from 'node:path';
import type { CommandContext } from '../../core/context.js';
import { backupDirFor, peerTarget, withLock } from '../../core/context.js';
import { gatherPairFacts } from '../../core/facts.js';
import { readLocalControlData } from '../../core/control.js';
import { executePlan } from '../../core/execute.js';
import { RefusedError } from '../../core/errors.js';
import type { DivergenceRecord } from '../../core/rejoin-actions.js';
import { historyFileName } from '../../pg/controldata.js';
import { formatBytes } from '../../pg/lsn.js';
import { quoteLiteral } from '../../pg/conninfo.js';
import { renderManagedFiles } from '../render.js';
import { confirmPlan } from '../confirm.js';
import { decideRejoin, planRejoin, type RejoinFacts, type RejoinOptions } from './plan.js';

/** Everything rejoin decides from. Read-only. */
export async function gatherRejoinFacts(ctx: CommandContext): Promise<RejoinFacts> {
  const config = ctx.config;
  const [pair, control] = await Promise.all([gatherPairFacts(ctx), readLocalControlData(ctx)]);
  const password = await ctx.secrets.read('replication');
  let peerHistory: string | undefined;
  let peerCanCheckpoint = false;
  const timeline = pair.peer.server?.timeline;
  if (password && pair.peer.reachable) {
    const target = peerTarget(config, password);
    if (timeline && timeline > 1) {
      try {
        const rows = await ctx.ports.pg.queryPeer<{ text: string }>(
          target,
          `SELECT convert_from(pg_read_binary_file(${quoteLiteral(`pg_wal/${historyFileName(timeline)}`)}), 'UTF8') AS text`,
        );
        peerHistory = rows[0]?.text;
      } catch {
        peerHistory = undefined;
      }
    }
    try {
      const rows = await ctx.ports.pg.queryPeer<{ ok: boolean }>(
        target,
        "SELECT pg_has_role(current_user, 'pg_checkpoint', 'MEMBER') AS ok",
      );
      peerCanCheckpoint = rows[0]?.ok === true;
    } catch {
      peerCanCheckpoint = false;
    }
  }
  const passfile = await ctx.ports.files.readTextIfExists(config.postgres.passfile).catch(() => undefined);
  return {
    pair,
    ...(control ? { control } : {}),
    ...(peerHistory === undefined ? {} : { peerHistory }),
    peerCanCheckpoint,
    passfileCurrent:
      password !== undefined &&
      passfile !== undefined &&
      passfile.includes(`:${config.replication.user}:${password}`),
  };
}

/** Runs rejoin once the lock is held (switchover calls this for its last part). */
export async function runRejoin(ctx: CommandContext, options: RejoinOptions): Promise<void> {
  const config = ctx.config;
  const started = ctx.ports.clock.now();
  const facts = await gatherRejoinFacts(ctx);
  const decision = decideRejoin(facts, config, options);
  if (decision.action === 'refuse') {
    throw new RefusedError(
      `rejoin: refusing: ${decision.reason}; nothing was changed`,
      undefined,
      decision.hint,
    );
  }
  if (decision.wasWritable) {
    ctx.reporter.warn(
      `${config.node.name} was still a writable primary (not fenced): what it took since the timelines split is discarded (kept in the backup folder)`,
    );
  }
  const rendered = renderManagedFiles(ctx, {
    role: 'standby',
    primary: { host: config.peer.address, port: config.peer.postgresPort },
  });
  if (!rendered.standbyFile) {
    throw new Error('internal: no standby file rendered');
  }
  const backupDir = backupDirFor(config, ctx.ports.clock.now());
  const plan = planRejoin({
    facts,
    decision,
    config,
    options,
    rendered: { ...rendered, standbyFile: rendered.standbyFile },
    backupDir,
  });
  await confirmPlan(
    ctx,
    plan,
    `${plan.summary}: the data that diverged from ${config.peer.name} is discarded. Go on?`,
  );
  const result = await executePlan(ctx, plan, { dryRun: ctx.options.dryRun });
  if (ctx.options.dryRun) {
    return;
  }
  const seconds = Number(((ctx.ports.clock.now() - started) / 1000).toFixed(2));
  let divergence: DivergenceRecord | undefined;
  if (result.completed.includes('save-diverged-wal')) {
    const text = await ctx.ports.files.readTextIfExists(path.join(backupDir, 'divergence.json'));
    divergence = text ? (JSON.parse(text) as DivergenceRecord) : undefined;
  }
  const lost = divergence
    ? divergence.discardedBytes === null
      ? ` Timelines split at ${divergence.divergedAt ?? '?'}; how much WAL came after it is unknown.`
      : ` Timelines split at ${divergence.divergedAt ?? '?'}: ${formatBytes(divergence.discardedBytes)} of WAL${divergence.records !== null ? ` (${divergence.records} records)` : ''} written after it by ${config.node.name} were discarded${divergence.savedIn ? ` (kept in ${divergence.savedIn})` : ''}.`
    : '';
  const already = plan.steps.every((s) => s.done !== undefined || s.kind === 'wait');
  let method: string = decision.method;
  let methodDetail: string | undefined = decision.basebackupReason;
  if (result.completed.includes('rewind')) {
    const text = await ctx.ports.files.readTextIfExists(path.join(backupDir, 'rewind.json'));
    const r = text ? (JSON.parse(text) as { method: string; detail: string }) : undefined;
    method = r?.method ?? method;
    methodDetail = r?.detail ?? methodDetail;
  }
  ctx.reporter.result(
    already
      ? `${config.node.name} is already the streaming standby of ${config.peer.name}: nothing to do.`
      : `${config.node.name} is the streaming standby of ${config.peer.name} (${seconds}s, ${method === 'rewind' ? 'pg_rewind' : method === 'none' ? 'no rewind needed' : `base backup: ${methodDetail ?? ''}`}).${lost} Backups: ${backupDir}`,
    {
      command: 'rejoin',
      node: config.node.name,
      primary: config.peer.name,
      method,
      methodDetail: methodDetail ?? null,
      already,
      divergence: divergence ?? null,
      completed: result.completed,
      skipped: result.skipped,
      seconds,
      backupDir: already ? null : backupDir,
    },
  );
}

export async function rejoinStreaming(ctx: CommandContext, options: RejoinOptions): Promise<void> {
  await withLock(ctx, 'rejoin', () => runRejoin(ctx, options));
}
