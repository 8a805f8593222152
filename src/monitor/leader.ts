/**
 * Automatic failover's decisions, pure: what this node's monitor does about the leader key in etcd
 * (./dcs.ts), the timings `check` enforces, and the `explain` line of `status`.
 *
 * Timings with the defaults (ttlMs 10000, loopMs 1000, selfFenceMarginMs 3500):
 *   - the primary renews every second; its own deadline is the send time of its last successful
 *     renewal + 6.5 s; at the deadline it fences itself (read-only, health 503) unless the failsafe
 *     holds (etcd unreachable and its standby seen following it within failover.failsafeMs);
 *   - the lease, renewed no earlier than that send time, expires 10 s after it at the soonest: 3.5 s
 *     after the self-fence is due (one monitor loop, the fence itself, and a clock-rate allowance);
 *   - the standby takes the key only once it is gone, only if the old primary has not answered as a
 *     writable primary for failover.peerQuietMs (the old primary's failsafe ends failsafeMs after it last
 *     saw the standby, and its fence takes a monitor loop and a query timeout: 2 + 0.2 + 2 < 5 s), and
 *     only if it was synchronous at the last renewal or is within failover.maxLagBytes of it.
 */
import type { Config } from '../core/config.js';
import { formatBytes, lsnDiff } from '../pg/lsn.js';
import type { DcsView, Holding, LeaderRecord } from './dcs.js';

/** This node as the monitor's last sample showed it. */
export type LocalRole = 'primary' | 'standby' | 'read-only' | 'down';

export interface LeaderInput {
  readonly now: number;
  readonly role: LocalRole;
  readonly fenced: boolean;
  /** The last read of the store, and when it was answered; undefined: no answer yet. */
  readonly view: DcsView | undefined;
  readonly viewAt: number | undefined;
  readonly holding: (Holding & { readonly renewedAt: number }) | undefined;
  /** When the monitor started (the deadline of a primary that never held the key counts from it). */
  readonly startedAt: number;
  /** The last time this node's probe saw the peer in recovery (following). */
  readonly peerFollowingAt: number | undefined;
  /** The last time this node's probe saw the peer as a writable primary. */
  readonly peerWritableAt: number | undefined;
  /** A takeover (acquisition + failover plan) runs. */
  readonly takeoverRunning: boolean;
}

export type LeaderAction =
  | { readonly action: 'none'; readonly reason: string }
  | {
      readonly action: 'acquire';
      readonly expectedTerm: number;
      /** This node was the last holder: it takes its own key again without a new term. */
      readonly keepTerm: boolean;
      readonly reason: string;
    }
  | { readonly action: 'renew'; readonly reason: string }
  | { readonly action: 'fence'; readonly reason: string }
  | {
      readonly action: 'takeover';
      readonly expectedTerm: number;
      readonly lastLeader: LeaderRecord | undefined;
      readonly reason: string;
    };

/** The primary's own deadline: last successful renewal (send time) + ttl - margin. */
export function ownDeadline(config: Config, renewedAt: number): number {
  return renewedAt + config.failover.ttlMs - config.failover.selfFenceMarginMs;
}

function ago(now: number, at: number | undefined): string {
  return at === undefined ? 'never' : `${((now - at) / 1000).toFixed(1)} s ago`;
}

/**
 * Decides one step of automatic failover. Never throws. The view counts as fresh when it was answered
 * within two failover loops; an older one means etcd is unreachable from here.
 */
export function decideLeader(input: LeaderInput, config: Config): LeaderAction {
  const { now, role, view, holding } = input;
  const me = config.node.name;
  const peer = config.peer.name;
  const f = config.failover;
  const fresh = view !== undefined && input.viewAt !== undefined && now - input.viewAt <= 2 * f.loopMs;
  if (role === 'primary' && !input.fenced) {
    const deadline = ownDeadline(config, holding?.renewedAt ?? input.startedAt);
    if (fresh) {
      const leader = view.leader;
      if (leader && leader.node !== me) {
        return {
          action: 'fence',
          reason: `${leader.node} holds the leader key (term ${leader.term}): ${me} is a superseded primary`,
        };
      }
      if (holding && view.term > holding.term) {
        return {
          action: 'fence',
          reason: `the term moved on to ${view.term} (${me} held ${holding.term}): ${me} is a superseded primary`,
        };
      }
      if (leader && holding && leader.leaseId === holding.leaseId) {
        return { action: 'renew', reason: `${me} holds the leader key (term ${holding.term})` };
      }
      if (holding && view.term < holding.term) {
        // read before this node's own acquisition: says nothing about it
        return { action: 'none', reason: `${me} holds the leader key (term ${holding.term})` };
      }
      if (!leader) {
        if (holding && view.term !== holding.term) {
          return {
            action: 'fence',
            reason: `the term is ${view.term}, not ${holding.term} as ${me} held it: ${me} is a superseded primary`,
          };
        }
        const keepTerm = view.term > 0 && view.lastLeader?.node === me;
        return {
          action: 'acquire',
          expectedTerm: view.term,
          keepTerm,
          reason: keepTerm
            ? `${me}'s lease expired and nobody took the key: taking it again (term ${view.term})`
            : `no leader key: ${me} is the writable primary and takes it (term ${view.term + 1})`,
        };
      }
      // The key names this node under a lease it does not hold (a restarted monitor): it expires by
      // itself within the TTL and is taken again then; the standby waits while this node is writable.
      if (now < deadline || !holding) {
        return {
          action: 'none',
          reason: `the leader key names ${me} under a lease this monitor does not hold; waiting for it to expire`,
        };
      }
    }
    if (now >= deadline) {
      const followingAge = input.peerFollowingAt === undefined ? Infinity : now - input.peerFollowingAt;
      if (!fresh && followingAge <= f.failsafeMs) {
        return {
          action: 'none',
          reason: `etcd unreachable since ${ago(now, input.viewAt)}; failsafe: ${peer} follows ${me} (seen ${ago(now, input.peerFollowingAt)}), so it cannot be promoted`,
        };
      }
      return {
        action: 'fence',
        reason: `no renewal of the leader key since ${ago(now, holding?.renewedAt ?? input.startedAt)} (deadline ttl ${f.ttlMs} - margin ${f.selfFenceMarginMs} ms) and ${peer} not seen following for ${f.failsafeMs} ms: fencing before the lease can expire`,
      };
    }
    return {
      action: 'none',
      reason: `etcd unreachable since ${ago(now, input.viewAt)}; ${me} fences itself in ${Math.round(deadline - now)} ms unless a renewal succeeds or ${peer} follows`,
    };
  }
  if (role === 'standby' && !input.fenced) {
    if (input.takeoverRunning) {
      return { action: 'none', reason: `${me} is taking over` };
    }
    if (!fresh) {
      return {
        action: 'none',
        reason: `etcd unreachable (last answer ${ago(now, input.viewAt)}): no failover`,
      };
    }
    if (view.leader) {
      return {
        action: 'none',
        reason: `${view.leader.node} holds the leader key (term ${view.leader.term}${view.leaseRemainingMs === undefined ? '' : `, lease ${(view.leaseRemainingMs / 1000).toFixed(0)} s left`})`,
      };
    }
    if (view.paused) {
      return {
        action: 'none',
        reason: `paused (since ${view.paused.at} by ${view.paused.by}): the leader key is gone but no failover`,
      };
    }
    const last = view.lastLeader;
    const released = last?.released === true && last.node === peer;
    const writableAge = input.peerWritableAt === undefined ? Infinity : now - input.peerWritableAt;
    if (!released && writableAge < f.peerQuietMs) {
      return {
        action: 'none',
        reason: `the leader key is gone but ${peer} answered as a writable primary ${ago(now, input.peerWritableAt)} (failover.peerQuietMs ${f.peerQuietMs}): no failover while it may still take writes`,
      };
    }
    return {
      action: 'takeover',
      expectedTerm: view.term,
      lastLeader: last,
      reason: `the leader key is gone (${last ? `${last.node}'s last renewal ${last.renewedAt}${released ? ', released after it fenced itself' : ''}` : 'never held'})`,
    };
  }
  if (holding && role === 'down' && !input.fenced && now >= ownDeadline(config, holding.renewedAt)) {
    // Hung or stopped: the standby may take over once the lease ends, so no later start may be writable.
    return {
      action: 'fence',
      reason: `${me}'s PostgreSQL has not answered since before the self-fence deadline (no renewal since ${ago(now, holding.renewedAt)}): fencing so that it never starts writable again`,
    };
  }
  if (holding) {
    return {
      action: 'none',
      reason: `${me} is ${input.fenced ? 'fenced' : role}: not renewing; the lease ends by itself`,
    };
  }
  return {
    action: 'none',
    reason: `${me} is ${input.fenced ? 'fenced' : role}: nothing to do about the leader key`,
  };
}

export type Eligibility =
  { readonly ok: true; readonly reason: string } | { readonly ok: false; readonly reason: string };

/**
 * May this standby be promoted, given the old primary's last renewal and its own position? Synchronous
 * at the last renewal (the old primary records sync: false in etcd before it ever degrades), or within
 * failover.maxLagBytes of the LSN of that renewal.
 */
export function takeoverEligibility(
  last: LeaderRecord | undefined,
  receivedLsn: string | null,
  config: Config,
): Eligibility {
  const peer = config.peer.name;
  if (!last) {
    return {
      ok: false,
      reason: 'no renewal of the leader key was ever recorded: nothing tells how far behind this node is',
    };
  }
  if (last.node !== peer) {
    return { ok: false, reason: `the last leader was ${last.node}, not ${peer}` };
  }
  if (last.sync) {
    return { ok: true, reason: `${peer} was synchronous at its last renewal (${last.renewedAt})` };
  }
  if (!last.lsn || !receivedLsn) {
    return {
      ok: false,
      reason: `${peer} was not synchronous at its last renewal and the positions are unknown`,
    };
  }
  const lag = lsnDiff(last.lsn, receivedLsn);
  if (lag > config.failover.maxLagBytes) {
    return {
      ok: false,
      reason: `${peer} was not synchronous at its last renewal (${last.renewedAt}) and this node is ${formatBytes(lag)} behind its LSN ${last.lsn} (failover.maxLagBytes ${formatBytes(config.failover.maxLagBytes)})`,
    };
  }
  return {
    ok: true,
    reason: `${peer} was not synchronous at its last renewal but this node is within ${formatBytes(Math.max(0, lag))} of its LSN ${last.lsn}`,
  };
}

/** One problem of the automatic failover timings, with its fix. */
export interface TimingProblem {
  readonly problem: string;
  readonly fix: string;
}

export interface TimingReport {
  readonly problems: readonly TimingProblem[];
  /** Worst-case time from the loss of the primary to writes through HAProxy on the new one (ms). */
  readonly worstRtoMs: number;
  /** The parts of worstRtoMs, in order. */
  readonly rtoParts: readonly { readonly what: string; readonly ms: number }[];
}

/** Time the self-fence itself may take (read-only + end sessions): one local query timeout. */
function fenceMs(config: Config): number {
  return config.monitor.queryTimeoutMs;
}

/** Checks the timings of automatic failover against each other and HAProxy's. Pure. */
export function checkTimings(config: Config): TimingReport {
  const f = config.failover;
  const m = config.monitor;
  const h = config.haproxy;
  const problems: TimingProblem[] = [];
  if (f.loopMs * 3 > f.ttlMs) {
    problems.push({
      problem: `failover.loopMs ${f.loopMs} is more than a third of failover.ttlMs ${f.ttlMs}: two lost renewals would already expire the lease`,
      fix: `set failover.loopMs to at most ${Math.floor(f.ttlMs / 3)} or raise failover.ttlMs`,
    });
  }
  const clockAllowance = Math.ceil(f.ttlMs / 100);
  const needMargin = f.loopMs + m.loopMs + fenceMs(config) + clockAllowance;
  if (f.selfFenceMarginMs < needMargin) {
    problems.push({
      problem: `failover.selfFenceMarginMs ${f.selfFenceMarginMs} is shorter than one failover loop (${f.loopMs}) + one monitor loop (${m.loopMs}) + the fence (monitor.queryTimeoutMs ${fenceMs(config)}) + 1% of the TTL for clock rates (${clockAllowance}) = ${needMargin} ms: the lease could expire before the old primary is read-only`,
      fix: `set failover.selfFenceMarginMs to at least ${needMargin}`,
    });
  }
  if (f.selfFenceMarginMs >= f.ttlMs - f.loopMs) {
    problems.push({
      problem: `failover.selfFenceMarginMs ${f.selfFenceMarginMs} leaves less than one renewal (failover.loopMs ${f.loopMs}) before the self-fence: the primary would fence itself after one slow renewal`,
      fix: `lower failover.selfFenceMarginMs below ${f.ttlMs - f.loopMs} or raise failover.ttlMs`,
    });
  }
  const needQuiet = f.failsafeMs + m.loopMs + fenceMs(config) + 500;
  if (f.peerQuietMs < needQuiet) {
    problems.push({
      problem: `failover.peerQuietMs ${f.peerQuietMs} is shorter than failover.failsafeMs ${f.failsafeMs} + monitor.loopMs ${m.loopMs} + the fence ${fenceMs(config)} + 500 ms = ${needQuiet}: a standby could promote while an old primary in failsafe still takes writes`,
      fix: `set failover.peerQuietMs to at least ${needQuiet} or lower failover.failsafeMs`,
    });
  }
  const probeEvery = Math.max(m.peerTimeoutMs, m.peerIntervalMs);
  if (f.failsafeMs < 2 * probeEvery) {
    problems.push({
      problem: `failover.failsafeMs ${f.failsafeMs} is shorter than two peer probes (monitor.peerTimeoutMs ${m.peerTimeoutMs}, monitor.peerIntervalMs ${m.peerIntervalMs}): one slow or missed probe would end the failsafe`,
      fix: `set failover.failsafeMs to at least ${2 * probeEvery}, or lower monitor.peerIntervalMs`,
    });
  }
  if (config.replication.synchronous && m.degradeAfterMs >= f.ttlMs) {
    problems.push({
      problem: `monitor.degradeAfterMs ${m.degradeAfterMs} is not shorter than failover.ttlMs ${f.ttlMs}: commits would hang longer than a failover takes`,
      fix: `set monitor.degradeAfterMs below ${f.ttlMs}`,
    });
  }
  if (h.configured) {
    const markDownMs = h.interMs * h.fall;
    if (markDownMs > f.selfFenceMarginMs) {
      problems.push({
        problem: `HAProxy needs up to haproxy.interMs ${h.interMs} x haproxy.fall ${h.fall} = ${markDownMs} ms to mark a self-fenced primary down, longer than failover.selfFenceMarginMs ${f.selfFenceMarginMs}: the proxy could still route to it when the lease expires`,
        fix: `lower haproxy.interMs or haproxy.fall, or raise failover.selfFenceMarginMs to at least ${markDownMs}`,
      });
    }
  }
  const riseMs = h.configured ? h.downinterMs + (h.rise - 1) * h.fastinterMs + h.checkTimeoutMs : 0;
  const rtoParts = [
    { what: 'lease expiry after the last renewal (failover.ttlMs)', ms: f.ttlMs },
    { what: 'the standby reads the key (failover.loopMs)', ms: f.loopMs },
    { what: 'promotion (up to failover.promoteTimeoutMs; typically 1-2 s)', ms: 2000 },
    ...(h.configured
      ? [
          {
            what: 'HAProxy admits the new primary (downinter + (rise - 1) x fastinter + timeout)',
            ms: riseMs,
          },
        ]
      : []),
  ];
  return { problems, worstRtoMs: rtoParts.reduce((s, p) => s + p.ms, 0), rtoParts };
}

/** What `status` says about automatic failover. */
export interface AutoStatus {
  readonly leader: string | null;
  readonly term: number | null;
  readonly leaseRemainingMs: number | null;
  readonly lastRenewal: string | null;
  readonly paused: boolean;
  readonly reachable: boolean;
  /** Why no failover is happening (or what would happen). */
  readonly explain: string;
}

/**
 * The explain line: why no failover happens when one might be expected. Pure.
 * `standbyLagBytes` is how far the standby is behind the last renewal's LSN (null: unknown).
 */
export function explainAuto(
  view: DcsView | undefined,
  error: string | undefined,
  primaryUp: boolean,
  standbyName: string | undefined,
  config: Config,
): AutoStatus {
  if (!view) {
    return {
      leader: null,
      term: null,
      leaseRemainingMs: null,
      lastRenewal: null,
      paused: false,
      reachable: false,
      explain: `etcd unreachable (${error ?? 'no answer'}): no automatic failover can happen; a primary that cannot renew fences itself unless its standby follows it (failsafe)`,
    };
  }
  const base = {
    leader: view.leader?.node ?? null,
    term: view.term,
    leaseRemainingMs: view.leaseRemainingMs ?? null,
    lastRenewal: view.lastLeader?.renewedAt ?? null,
    paused: view.paused !== undefined,
    reachable: true,
  };
  if (!config.failover.automatic) {
    return { ...base, explain: 'failover.automatic is false: failover is manual (`chef-ha-ctl failover`)' };
  }
  if (view.paused) {
    return {
      ...base,
      explain: `paused since ${view.paused.at} by ${view.paused.by}${view.paused.reason ? ` (${view.paused.reason})` : ''}: no automatic action until \`chef-ha-ctl resume\``,
    };
  }
  if (view.leader) {
    return {
      ...base,
      explain: primaryUp
        ? `${view.leader.node} holds the leader key: no failover needed`
        : `${view.leader.node} holds the leader key although no writable primary answers: the standby waits for the lease to expire`,
    };
  }
  const last = view.lastLeader;
  if (standbyName === undefined) {
    return { ...base, explain: 'the leader key is free and no standby answers: nothing can be promoted' };
  }
  if (last && !last.sync && last.node !== standbyName) {
    return {
      ...base,
      explain: `the leader key is free; ${last.node} was not synchronous at its last renewal: ${standbyName} is promoted only within failover.maxLagBytes (lagging, not sync)`,
    };
  }
  return {
    ...base,
    explain: primaryUp
      ? 'the leader key is free: the primary takes it at its next renewal'
      : `the leader key is free: ${standbyName} takes over once the old primary has been silent for failover.peerQuietMs`,
  };
}
