/**
 * The pre-start guard: runs before PostgreSQL starts (systemd ExecStartPre= in production, the
 * postgres.preStartHook in the sandbox) so that a fenced or superseded old primary never comes up
 * writable. decideGuard is pure; gatherGuardFacts only reads.
 */
import * as path from 'node:path';
import type { Config } from '../core/config.js';
import type { CommandContext } from '../core/context.js';
import { localTarget } from '../core/context.js';
import { gatherFenceFacts, type FenceFacts } from '../core/facts.js';
import { renderFenceFile } from '../pg/version.js';
import type { PeerSample } from './decide.js';
import { probePeer, withTimeout } from './loop.js';

export interface GuardFacts {
  readonly fence: FenceFacts;
  /** The data directory holds the standby file: the start will be read-only anyway. */
  readonly startsReadOnly: boolean;
  /** "Latest checkpoint's TimeLineID" of pg_controldata; undefined when unreadable. */
  readonly checkpointTimeline: number | undefined;
  readonly peer: PeerSample | undefined;
  /**
   * With failover.automatic: the node holding the leader key in etcd (null: nobody), undefined when
   * etcd was not asked or did not answer.
   */
  readonly leader?: string | null;
}

export type GuardDecision =
  | { readonly action: 'allow'; readonly reason: string }
  | { readonly action: 'fence'; readonly reason: string };

/** Decides whether the start may go on as it is, or must be made read-only first. Pure. */
export function decideGuard(facts: GuardFacts, config: Config): GuardDecision {
  const me = config.node.name;
  const peer = config.peer.name;
  const fenceFile = renderFenceFile(config.postgres.version).name;
  if (facts.fence.running) {
    return { action: 'allow', reason: `${me}'s PostgreSQL is already running; nothing to guard` };
  }
  if (facts.fence.fenced && !facts.startsReadOnly) {
    return {
      action: 'fence',
      reason: `${me} is fenced (since ${facts.fence.fenced.at}: ${facts.fence.fenced.reason}) but ${fenceFile} is missing: writing it so that the start is read-only`,
    };
  }
  if (facts.startsReadOnly) {
    return { action: 'allow', reason: `${fenceFile} is present: ${me} starts read-only (as a standby)` };
  }
  if (typeof facts.leader === 'string' && facts.leader !== me) {
    return {
      action: 'fence',
      reason: `${facts.leader} holds the leader key in etcd: ${me} was superseded by an automatic failover and must not start writable`,
    };
  }
  const p = facts.peer;
  if (!p) {
    return {
      action: 'allow',
      reason: `${peer} does not answer and ${me} is not fenced: starting as it is (a superseded primary is fenced by failover over ssh, or by the monitor once it sees ${peer})`,
    };
  }
  if (p.inRecovery) {
    return { action: 'allow', reason: `${peer} is a standby: ${me} may start as the primary` };
  }
  if (
    p.timeline !== null &&
    facts.checkpointTimeline !== undefined &&
    p.timeline > facts.checkpointTimeline
  ) {
    return {
      action: 'fence',
      reason: `${peer} is a primary on timeline ${p.timeline}, newer than ${me}'s last checkpoint timeline ${facts.checkpointTimeline}: ${me} was superseded by a failover and must not start writable`,
    };
  }
  if (facts.checkpointTimeline === undefined) {
    return {
      action: 'fence',
      reason: `${peer} answers as a primary and ${me}'s timeline cannot be read (pg_controldata): starting read-only to be safe`,
    };
  }
  return {
    action: 'allow',
    reason: `${peer} answers as a primary on timeline ${p.timeline ?? '?'}, not newer than ${me}'s ${facts.checkpointTimeline}`,
  };
}

/** Parses "Latest checkpoint's TimeLineID:" from pg_controldata output (run with LC_ALL=C). */
export function parseCheckpointTimeline(controldata: string): number | undefined {
  const m = /^Latest checkpoint's TimeLineID:\s+(\d+)\s*$/m.exec(controldata);
  return m?.[1] ? Number(m[1]) : undefined;
}

/** Reads what the guard needs. Never changes anything; every probe has a timeout. */
export async function gatherGuardFacts(ctx: CommandContext): Promise<GuardFacts> {
  const { config, ports } = ctx;
  const fence = await gatherFenceFacts(ctx);
  const fenceFile = renderFenceFile(config.postgres.version).name;
  const startsReadOnly = await ports.files.exists(path.join(config.postgres.dataDir, fenceFile));
  if (fence.running || startsReadOnly) {
    // decideGuard allows these starts whatever the timeline and the peer say: do not spend a
    // pg_controldata run and a peer round trip on them (every standby start goes through here).
    return { fence, startsReadOnly, checkpointTimeline: undefined, peer: undefined };
  }
  const cd = await withTimeout(
    ports.shell.run([path.join(config.postgres.bindir, 'pg_controldata'), '-D', config.postgres.dataDir], {
      user: localTarget(config).osUser,
      env: { LC_ALL: 'C', LANG: 'C' },
      timeoutMs: 10_000,
    }),
    11_000,
  );
  const checkpointTimeline = cd?.exitCode === 0 ? parseCheckpointTimeline(cd.stdout) : undefined;
  const peer = await probePeer(ctx);
  // etcd (and gRPC) only with automatic failover, and only when the start could be writable
  let leader: string | null | undefined;
  if (config.failover.automatic && !startsReadOnly && !fence.fenced) {
    const { openEtcdDcs } = await import('./dcs.js');
    const dcs = await openEtcdDcs(config);
    try {
      const view = await withTimeout(dcs.read(), config.dcs.etcd.requestTimeoutMs * 2);
      leader = view === undefined ? undefined : (view.leader?.node ?? null);
    } finally {
      dcs.close();
    }
  }
  return { fence, startsReadOnly, checkpointTimeline, peer, ...(leader === undefined ? {} : { leader }) };
}
