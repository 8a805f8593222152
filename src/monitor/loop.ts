/**
 * The monitor's loop: sample this node every monitor.loopMs, keep the latest answer of the peer (probed
 * in the background, so that a cut-off peer never slows the loop), decide (./decide.ts) and act. Every
 * query has a timeout: a hung PostgreSQL is "no answer", never a stuck loop.
 */
import type { CommandContext } from '../core/context.js';
import { localTarget, peerTarget, statePaths, withLock } from '../core/context.js';
import { describeError } from '../core/errors.js';
import { gatherFenceFacts } from '../core/facts.js';
import { executePlan } from '../core/execute.js';
import { quoteLiteral } from '../pg/conninfo.js';
import { monitorSampleQuery, peerRoleQuery } from '../pg/queries.js';
import { featuresFor } from '../pg/version.js';
import { slotNameFor } from '../core/config.js';
import { planFence } from '../commands/fence/index.js';
import { syncStandbyNamesFor } from '../commands/setup-master/plan.js';
import type { AutoFailover } from './auto.js';
import {
  decideMonitor,
  parseDegradedRecord,
  type DegradedRecord,
  type LocalSample,
  type MonitorAction,
  type MonitorMemory,
  type PeerSample,
  type StandbyRow,
} from './decide.js';

/** Resolves to the promise's value, or to undefined when it takes longer than ms (or fails). */
export async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => {
      resolve(undefined);
    }, ms);
  });
  try {
    return await Promise.race([promise.catch(() => undefined), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

interface SampleRow {
  in_recovery: boolean;
  read_only: boolean;
  synchronous_standby_names: string;
  timeline: number | null;
  current_lsn: string | null;
  oldest_sync_rep_wait_ms: number | null;
  standby: {
    state: string;
    sync_state: string;
    flush_lsn: string | null;
    reply_time_ms: number | null;
  } | null;
  now_ms: number;
}

/** One sample of the local server; undefined when it does not answer within monitor.queryTimeoutMs. */
export async function probeLocal(ctx: CommandContext): Promise<LocalSample | undefined> {
  const { config, ports } = ctx;
  const f = featuresFor(config.postgres.version);
  const started = ports.clock.now();
  const timeoutMs = config.monitor.queryTimeoutMs;
  const rows = await withTimeout(
    ports.pg.queryLocal<SampleRow>(
      localTarget(config),
      'postgres',
      monitorSampleQuery(f, quoteLiteral(slotNameFor(config.peer.name))),
      timeoutMs,
    ),
    timeoutMs,
  );
  const row = rows?.[0];
  if (!row) {
    return undefined;
  }
  const standby: StandbyRow | undefined = row.standby
    ? {
        state: row.standby.state,
        syncState: row.standby.sync_state,
        flushLsn: row.standby.flush_lsn,
        replyTimeMs: row.standby.reply_time_ms,
      }
    : undefined;
  return {
    inRecovery: row.in_recovery,
    readOnly: row.read_only,
    timeline: row.timeline,
    currentLsn: row.current_lsn,
    synchronousStandbyNames: row.synchronous_standby_names,
    standby,
    oldestSyncRepWaitMs: row.oldest_sync_rep_wait_ms,
    nowMs: row.now_ms,
    probeMs: ports.clock.now() - started,
  };
}

/** The peer's role and timeline over PostgreSQL; undefined when it does not answer in time. */
export async function probePeer(ctx: CommandContext): Promise<PeerSample | undefined> {
  const { config, ports } = ctx;
  const password = await withTimeout(ctx.secrets.read('replication'), config.monitor.queryTimeoutMs);
  if (!password) {
    return undefined;
  }
  const timeoutMs = config.monitor.peerTimeoutMs;
  const rows = await withTimeout(
    ports.pg.queryPeer<{ in_recovery: boolean; read_only: boolean; timeline: number | null }>(
      { ...peerTarget(config, password, timeoutMs), statementTimeoutMs: timeoutMs },
      peerRoleQuery(featuresFor(config.postgres.version)),
    ),
    timeoutMs * 2 + 500,
  );
  const row = rows?.[0];
  return row ? { inRecovery: row.in_recovery, readOnly: row.read_only, timeline: row.timeline } : undefined;
}

async function readDegraded(ctx: CommandContext): Promise<DegradedRecord | undefined> {
  const text = await withTimeout(
    ctx.ports.files.readTextIfExists(statePaths(ctx.config).degraded),
    ctx.config.monitor.queryTimeoutMs,
  );
  return parseDegradedRecord(text);
}

async function writeDegraded(ctx: CommandContext, record: DegradedRecord): Promise<void> {
  await ctx.ports.files.mkdirp(ctx.config.stateDir, 0o700);
  await ctx.ports.files.writeAtomic(
    statePaths(ctx.config).degraded,
    `${JSON.stringify(record, null, 2)}\n`,
    0o644,
  );
}

export interface MonitorOptions {
  /** Stop after this many loops (tests); forever when absent. */
  readonly maxLoops?: number;
}

/** Performs one action. Errors are reported and the loop goes on: the next sample decides again. */
async function act(
  ctx: CommandContext,
  action: MonitorAction,
  local: LocalSample | undefined,
  auto: AutoFailover | undefined,
): Promise<void> {
  const { config, ports, reporter } = ctx;
  const target = localTarget(config);
  const me = config.node.name;
  const peer = config.peer.name;
  const timeoutMs = config.monitor.queryTimeoutMs;
  switch (action.action) {
    case 'none':
      return;
    case 'degrade': {
      if (auto && !(await auto.beforeDegrade(local))) {
        throw new Error(
          'automatic failover: sync: false could not be recorded in the leader key first, so the primary stays synchronous (commits wait) until it can',
        );
      }
      const since = new Date(ports.clock.now()).toISOString();
      // The record first: a monitor killed between the two still knows it has sync mode to restore.
      const record: DegradedRecord = { since, lsn: action.lsn, standby: peer, reason: action.reason };
      await writeDegraded(ctx, record);
      await ports.pg.execLocal(
        target,
        'postgres',
        "ALTER SYSTEM SET synchronous_standby_names = '';\nSELECT pg_reload_conf();\n",
        timeoutMs,
      );
      const f = featuresFor(config.postgres.version);
      const rows = await withTimeout(
        ports.pg.queryLocal<{ lsn: string }>(
          target,
          'postgres',
          `SELECT ${f.fn.currentLsn}()::text AS lsn`,
          timeoutMs,
        ),
        timeoutMs,
      );
      const lsn = rows?.[0]?.lsn ?? action.lsn;
      if (lsn !== action.lsn) {
        await writeDegraded(ctx, { ...record, lsn });
      }
      reporter.event(
        `monitor: degraded ${me} to asynchronous at LSN ${lsn}: ${action.reason}; writes acknowledged from now on exist only on ${me} until ${peer} catches up`,
        { event: 'degrade', node: me, standby: peer, since, lsn, reason: action.reason },
      );
      return;
    }
    case 'restore': {
      await ports.pg.execLocal(
        target,
        'postgres',
        `ALTER SYSTEM SET synchronous_standby_names = ${quoteLiteral(action.synchronousStandbyNames)};\nSELECT pg_reload_conf();\n`,
        timeoutMs,
      );
      await ports.files.remove(statePaths(config).degraded);
      reporter.event(`monitor: restored synchronous mode on ${me}: ${action.reason}`, {
        event: 'restore',
        node: me,
        standby: peer,
        lsn: local?.currentLsn ?? null,
        reason: action.reason,
      });
      return;
    }
    case 'clear-record':
      await ports.files.remove(statePaths(config).degraded);
      reporter.event(`monitor: ${action.reason}; removed the record`, {
        event: 'clear-degraded',
        node: me,
        reason: action.reason,
      });
      return;
    case 'fence': {
      reporter.event(`monitor: fencing ${me}: ${action.reason}`, {
        event: 'fence',
        node: me,
        reason: action.reason,
      });
      // Exactly what `chef-ha-ctl fence` does, under the same lock.
      await withLock(ctx, 'monitor (fence)', async () => {
        const facts = await gatherFenceFacts(ctx);
        const plan = planFence(
          facts,
          config,
          { reason: `monitor: ${action.reason}` },
          new Date(ports.clock.now()).toISOString(),
        );
        await executePlan(ctx, plan, { dryRun: false });
      });
      reporter.event(`monitor: ${me} is fenced: it takes no writes until \`chef-ha-ctl rejoin\``, {
        event: 'fenced',
        node: me,
      });
      await auto?.afterFence();
      return;
    }
  }
}

/**
 * Runs the monitor until the context's signal aborts (SIGINT/SIGTERM) or maxLoops is reached.
 * Never throws for PostgreSQL trouble: it reports it and samples again.
 */
export async function runMonitor(ctx: CommandContext, options: MonitorOptions = {}): Promise<void> {
  const { config, ports, reporter, signal } = ctx;
  const wanted = syncStandbyNamesFor(config.peer.name);
  let memory: MonitorMemory = { lastConfirmedAt: ports.clock.now() };
  let peer: PeerSample | undefined;
  let peerInFlight = false;
  let peerStop = false;
  let peerStartedAt = Number.NEGATIVE_INFINITY;
  let lastReason = '';
  let lastError = '';
  let loops = 0;
  const auto = config.failover.automatic
    ? await (await import('./auto.js')).AutoFailover.start(ctx)
    : undefined;
  reporter.event(
    `monitor: watching ${config.node.name} every ${config.monitor.loopMs} ms (${config.replication.synchronous ? `synchronous mode, degrade after ${config.monitor.degradeAfterMs} ms` : 'asynchronous mode'}; peer ${config.peer.name} at ${config.peer.address}:${config.peer.postgresPort})`,
    {
      event: 'start',
      node: config.node.name,
      loopMs: config.monitor.loopMs,
      degradeAfterMs: config.monitor.degradeAfterMs,
    },
  );
  const startPeerProbe = (): void => {
    const now = ports.clock.now();
    if (peerInFlight || peerStop || now - peerStartedAt < config.monitor.peerIntervalMs) {
      return;
    }
    peerInFlight = true;
    peerStartedAt = now;
    void probePeer(ctx)
      .then((p) => {
        peer = p;
        auto?.notePeer(p, ports.clock.now());
      })
      .finally(() => {
        peerInFlight = false;
      });
  };
  while (!signal.aborted && (options.maxLoops === undefined || loops < options.maxLoops)) {
    loops += 1;
    const started = ports.clock.now();
    startPeerProbe();
    const [local, degraded, fenceText] = await Promise.all([
      probeLocal(ctx),
      readDegraded(ctx),
      withTimeout(ports.files.readTextIfExists(statePaths(config).fence), config.monitor.queryTimeoutMs),
    ]);
    const decision = decideMonitor(
      { local, peer, degraded, fenced: fenceText !== undefined, now: ports.clock.now() },
      memory,
      config,
      wanted,
    );
    memory = decision.memory;
    const fenced = fenceText !== undefined;
    // Automatic failover first: a fence it asks for (deadline, superseded) wins over anything else.
    const autoFence = auto ? await auto.tick(local, fenced) : undefined;
    const action = autoFence ?? decision.action;
    if (action.action === 'none') {
      if (action.reason !== lastReason) {
        reporter.log(`monitor: ${action.reason}`);
        lastReason = action.reason;
      }
    } else {
      lastReason = '';
      try {
        await act(ctx, action, local, auto);
        lastError = '';
      } catch (error) {
        // Tried again every loop; said once per distinct failure, not five times a second.
        const text = `${action.action}: ${describeError(error)}`;
        if (text !== lastError) {
          reporter.event(
            `monitor: ${action.action} failed (trying again every loop): ${describeError(error)}`,
            {
              event: 'error',
              action: action.action,
              error: describeError(error),
            },
          );
          lastError = text;
        }
      }
    }
    const elapsed = ports.clock.now() - started;
    if (signal.aborted) {
      break;
    }
    try {
      await ports.clock.sleep(Math.max(0, config.monitor.loopMs - elapsed), signal);
    } catch {
      break;
    }
  }
  peerStop = true;
  await auto?.stop();
  reporter.event(`monitor: stopped`, { event: 'stop', node: config.node.name });
}
