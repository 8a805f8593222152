/**
 * The monitor's decisions, pure: one sample of this node (and the latest of the peer) in, one action
 * with its reason out. The loop in ./loop.ts gathers the samples and performs the actions.
 */
import type { Config } from '../core/config.js';
import { formatBytes, lsnDiff } from '../pg/lsn.js';

/** `<stateDir>/degraded.json`: written when the primary went asynchronous, removed on restore. */
export interface DegradedRecord {
  /** ISO-8601 time of the switch to asynchronous. */
  readonly since: string;
  /** The primary's WAL position at the switch: commits after it exist only on the primary. */
  readonly lsn: string;
  /** The standby that stopped confirming. */
  readonly standby: string;
  readonly reason?: string;
}

/** The synchronous standby's row in pg_stat_replication. */
export interface StandbyRow {
  readonly state: string;
  readonly syncState: string;
  readonly flushLsn: string | null;
  /** reply_time in ms since the epoch (PostgreSQL 12+), null before. */
  readonly replyTimeMs: number | null;
}

/** One sample of this node's server; undefined in LocalSample means "no answer" (down or hung). */
export interface LocalSample {
  readonly inRecovery: boolean;
  readonly readOnly: boolean;
  readonly timeline: number | null;
  readonly currentLsn: string | null;
  readonly synchronousStandbyNames: string;
  readonly standby: StandbyRow | undefined;
  /** Age of the oldest commit waiting for the synchronous standby (wait_event SyncRep), null if none. */
  readonly oldestSyncRepWaitMs: number | null;
  /** The server's clock when sampled (ms since the epoch). */
  readonly nowMs: number;
  /** How long the sample took (the time an action needs is about the same). */
  readonly probeMs: number;
}

/** The peer as last seen over PostgreSQL. */
export interface PeerSample {
  readonly inRecovery: boolean;
  readonly readOnly: boolean;
  readonly timeline: number | null;
}

export interface MonitorInput {
  /** undefined: the local server did not answer in time. */
  readonly local: LocalSample | undefined;
  /** undefined: the peer did not answer (down, cut off, no secret yet). */
  readonly peer: PeerSample | undefined;
  readonly degraded: DegradedRecord | undefined;
  readonly fenced: boolean;
  /** The monitor's clock (ms since the epoch). */
  readonly now: number;
}

/** What the monitor remembers between samples. */
export interface MonitorMemory {
  /** The last sample at which the synchronous standby was confirming (or sync was not in force). */
  readonly lastConfirmedAt: number;
}

export type MonitorAction =
  | { readonly action: 'none'; readonly reason: string }
  | {
      readonly action: 'degrade';
      readonly reason: string;
      /** How long confirmation has been missing, as estimated. */
      readonly missingMs: number;
      readonly lsn: string;
    }
  | { readonly action: 'restore'; readonly reason: string; readonly synchronousStandbyNames: string }
  /** The degraded record is stale (synchronous mode is back): remove it. */
  | { readonly action: 'clear-record'; readonly reason: string }
  | { readonly action: 'fence'; readonly reason: string };

export interface MonitorDecision {
  readonly action: MonitorAction;
  readonly memory: MonitorMemory;
}

/** Whether the synchronous standby confirms commits, as far as one sample shows. */
function confirming(row: StandbyRow | undefined): boolean {
  return row !== undefined && row.state === 'streaming' && row.syncState === 'sync';
}

/**
 * How long the synchronous standby has not been confirming, in ms (0 when it confirms).
 *
 * - No streaming sync row (standby stopped or killed: its walsender is gone at once): since the last
 *   sample that saw it confirming, or the age of the oldest SyncRep wait if that is longer.
 * - A streaming row (a cut-off standby keeps it until wal_sender_timeout, 60 s): the oldest SyncRep
 *   wait, but only if the standby has not replied for as long either; a healthy standby replies after
 *   every flush, so a long statement that just entered its SyncRep wait is not mistaken for a fault.
 */
export function estimateMissingMs(local: LocalSample, lastConfirmedAt: number, now: number): number {
  const wait = local.oldestSyncRepWaitMs;
  if (!confirming(local.standby)) {
    return Math.max(now - lastConfirmedAt, wait ?? 0);
  }
  if (wait === null) {
    return 0;
  }
  const replyAge =
    local.standby?.replyTimeMs === null || local.standby?.replyTimeMs === undefined
      ? wait
      : local.nowMs - local.standby.replyTimeMs;
  return Math.max(0, Math.min(wait, replyAge));
}

function parseIsoMs(iso: string): number {
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? 0 : ms;
}

/**
 * Decides what the monitor does after one sample. Pure; never throws.
 *
 * Order: a primary superseded by a newer timeline fences itself before anything else (a degrade would
 * only let it take more writes that are lost anyway); then the synchronous standby: degrade when it has
 * not confirmed for about degradeAfterMs, restore once it streams again and has caught up.
 */
export function decideMonitor(
  input: MonitorInput,
  memory: MonitorMemory,
  config: Config,
  wantedStandbyNames: string,
): MonitorDecision {
  const { local, peer, degraded, now } = input;
  const me = config.node.name;
  const peerName = config.peer.name;
  const keep = (reason: string, m: MonitorMemory = memory): MonitorDecision => ({
    action: { action: 'none', reason },
    memory: m,
  });
  const confirmedNow: MonitorMemory = { lastConfirmedAt: now };
  if (!local) {
    // No answer: nothing can be changed on a server that does not answer; keep the last confirmation
    // time so that a hang is counted as missing confirmation once the server answers again.
    return keep(`${me}'s PostgreSQL does not answer`);
  }
  if (local.inRecovery) {
    return keep(`${me} is a standby`, confirmedNow);
  }
  if (
    !local.readOnly &&
    peer &&
    !peer.inRecovery &&
    peer.timeline !== null &&
    local.timeline !== null &&
    peer.timeline > local.timeline
  ) {
    return {
      action: {
        action: 'fence',
        reason: `${peerName} is a primary on timeline ${peer.timeline}, newer than ${me}'s ${local.timeline}: ${peerName} was promoted, so ${me} is a superseded old primary`,
      },
      memory: confirmedNow,
    };
  }
  if (local.readOnly || input.fenced) {
    return keep(`${me} is read-only${input.fenced ? ' (fenced)' : ''}`, confirmedNow);
  }
  if (!config.replication.synchronous) {
    return keep('asynchronous mode is configured', confirmedNow);
  }
  const syncInForce = local.synchronousStandbyNames.trim() !== '';
  if (syncInForce) {
    if (confirming(local.standby) && local.oldestSyncRepWaitMs === null) {
      if (degraded) {
        return {
          action: {
            action: 'clear-record',
            reason: `synchronous mode is in force again and ${peerName} confirms; the degraded record since ${degraded.since} is stale`,
          },
          memory: confirmedNow,
        };
      }
      return keep(`${peerName} confirms synchronously`, confirmedNow);
    }
    const missingMs = estimateMissingMs(local, memory.lastConfirmedAt, now);
    // While the row says streaming and sync, a stall is measured by the waits, not by this clock.
    const next = confirming(local.standby) ? confirmedNow : memory;
    if (missingMs === 0) {
      return keep(`${peerName} confirms synchronously`, confirmedNow);
    }
    // Act now if waiting one more loop (plus the time the switch takes) would pass the bound.
    const triggerMs = config.monitor.degradeAfterMs - config.monitor.loopMs - local.probeMs;
    if (missingMs >= triggerMs) {
      const what = !local.standby
        ? `${peerName} is not connected`
        : local.standby.state !== 'streaming'
          ? `${peerName} is ${local.standby.state}`
          : local.standby.syncState !== 'sync'
            ? `${peerName} is ${local.standby.syncState}, not sync`
            : `${peerName} has not replied`;
      const wait =
        local.oldestSyncRepWaitMs === null
          ? ''
          : `, oldest commit waiting ${Math.round(local.oldestSyncRepWaitMs)} ms`;
      return {
        action: {
          action: 'degrade',
          reason: `${what}: no synchronous confirmation for ${Math.round(missingMs)} ms${wait} (monitor.degradeAfterMs ${config.monitor.degradeAfterMs})`,
          missingMs,
          lsn: local.currentLsn ?? '0/0',
        },
        memory: next,
      };
    }
    return keep(`${peerName} has not confirmed for ${Math.round(missingMs)} ms`, next);
  }
  // Synchronous mode is configured but off. Restore only what the monitor switched off: setup-master
  // leaves a new master asynchronous until its slave streams, and that is setup-slave's to switch on.
  if (!degraded) {
    return keep('synchronous mode is off and the monitor did not switch it off', confirmedNow);
  }
  const row = local.standby;
  if (!row || row.state !== 'streaming') {
    return keep(
      `degraded since ${degraded.since}: ${peerName} is ${row ? row.state : 'not connected'}`,
      confirmedNow,
    );
  }
  if (row.replyTimeMs !== null && row.replyTimeMs <= parseIsoMs(degraded.since)) {
    // A cut-off standby keeps its row, and may even look caught up when nothing was written; only a
    // reply after the switch proves the link works again.
    return keep(
      `degraded since ${degraded.since}: ${peerName} has not replied since the switch`,
      confirmedNow,
    );
  }
  if (!row.flushLsn || !local.currentLsn) {
    return keep(`degraded since ${degraded.since}: ${peerName}'s flush position is unknown`, confirmedNow);
  }
  const lag = lsnDiff(local.currentLsn, row.flushLsn);
  if (lag > config.monitor.restoreMaxLagBytes) {
    return keep(
      `degraded since ${degraded.since}: ${peerName} streams but is ${formatBytes(lag)} behind (monitor.restoreMaxLagBytes ${formatBytes(config.monitor.restoreMaxLagBytes)})`,
      confirmedNow,
    );
  }
  return {
    action: {
      action: 'restore',
      reason: `${peerName} streams again and has caught up (${formatBytes(Math.max(0, lag))} behind, flushed up to ${row.flushLsn})`,
      synchronousStandbyNames: wantedStandbyNames,
    },
    // Confirmation is counted from the restore: the standby gets degradeAfterMs to confirm from here.
    memory: confirmedNow,
  };
}

/** Parses degraded.json; undefined when absent, a placeholder when unreadable (still degraded). */
export function parseDegradedRecord(text: string | undefined): DegradedRecord | undefined {
  if (text === undefined) {
    return undefined;
  }
  try {
    const r = JSON.parse(text) as Partial<DegradedRecord>;
    return {
      since: typeof r.since === 'string' ? r.since : new Date(0).toISOString(),
      lsn: typeof r.lsn === 'string' ? r.lsn : '0/0',
      standby: typeof r.standby === 'string' ? r.standby : 'unknown',
      ...(typeof r.reason === 'string' ? { reason: r.reason } : {}),
    };
  } catch {
    return { since: new Date(0).toISOString(), lsn: '0/0', standby: 'unknown', reason: 'unreadable record' };
  }
}
