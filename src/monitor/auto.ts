/**
 * Automatic failover inside the monitor (failover.automatic): the leader key in etcd (./dcs.ts), decided
 * by ./leader.ts. The monitor's loop calls `tick` after every sample (monitor.loopMs); the store is read
 * and written in a background cycle every failover.loopMs, so that an unreachable etcd never slows the
 * loop and the self-fence deadline is checked on every sample.
 *
 * A takeover reuses `chef-ha-ctl failover`'s decision and plan (decideFailover, planFailover, the one
 * executor): promote, fence the old primary through HAProxy's runtime API and over ssh as configured,
 * restart erchef, reindex. The key is renewed while it runs.
 */
import * as path from 'node:path';
import type { CommandContext } from '../core/context.js';
import type { PeerPgTarget } from '../ports/index.js';
import { statePaths, withLock } from '../core/context.js';
import { RefusedError, describeError } from '../core/errors.js';
import { gatherFenceFacts, gatherPairFacts } from '../core/facts.js';
import { executePlan } from '../core/execute.js';
import { decideFailover } from '../commands/failover/decide.js';
import { planFailover } from '../commands/failover/plan.js';
import { renderManagedFiles } from '../commands/render.js';
import { lsnDiff } from '../pg/lsn.js';
import type { LocalSample, MonitorAction, PeerSample } from './decide.js';
import type { Dcs, DcsView, Holding, LeaderRecord } from './dcs.js';
import {
  checkTimings,
  decideLeader,
  takeoverEligibility,
  type LeaderAction,
  type LocalRole,
} from './leader.js';

function roleOf(local: LocalSample | undefined): LocalRole {
  if (!local) {
    return 'down';
  }
  if (local.inRecovery) {
    return 'standby';
  }
  return local.readOnly ? 'read-only' : 'primary';
}

/** The standby confirms synchronously in this sample (sync mode in force and a streaming sync row). */
function syncConfirmed(local: LocalSample | undefined): boolean {
  return (
    local !== undefined &&
    local.synchronousStandbyNames.trim() !== '' &&
    local.standby?.state === 'streaming' &&
    local.standby.syncState === 'sync'
  );
}

/** The context with peer queries bounded by monitor.peerTimeoutMs (connect and statement). */
function withShortPeerTimeouts(ctx: CommandContext): CommandContext {
  const base = ctx.ports.pg;
  const ms = ctx.config.monitor.peerTimeoutMs;
  const pg = Object.assign(Object.create(base) as typeof base, {
    queryPeer: <T>(target: PeerPgTarget, sql: string, values?: readonly unknown[]): Promise<T[]> =>
      base.queryPeer<T>(
        {
          ...target,
          connectTimeoutMs: target.connectTimeoutMs ?? ms,
          statementTimeoutMs: target.statementTimeoutMs ?? ms,
        },
        sql,
        values,
      ),
  });
  return { ...ctx, ports: { ...ctx.ports, pg } };
}

export class AutoFailover {
  private view: DcsView | undefined;
  private viewAt: number | undefined;
  private viewError: string | undefined;
  private holding: (Holding & { renewedAt: number }) | undefined;
  private local: LocalSample | undefined;
  private lastPrimarySample: LocalSample | undefined;
  private downSamples = 0;
  private fenced = false;
  private peerFollowingAt: number | undefined;
  private peerWritableAt: number | undefined;
  private cycle: Promise<void> | undefined;
  private lastCycleAt = 0;
  private stopped = false;
  private takeover: Promise<void> | undefined;
  private takeoverRefusedAt = 0;
  private lastReason = '';
  private lastError = '';
  private readonly startedAt: number;

  private constructor(
    private readonly ctx: CommandContext,
    private readonly dcs: Dcs,
  ) {
    this.startedAt = ctx.ports.clock.now();
  }

  static async start(ctx: CommandContext): Promise<AutoFailover> {
    const timings = checkTimings(ctx.config);
    if (timings.problems.length > 0) {
      throw new RefusedError(
        `monitor: automatic failover refuses incoherent timings: ${timings.problems.map((p) => p.problem).join('; ')}`,
        undefined,
        timings.problems.map((p) => p.fix).join('; '),
      );
    }
    const { openEtcdDcs } = await import('./dcs.js');
    const dcs = await openEtcdDcs(ctx.config);
    const c = ctx.config;
    ctx.reporter.event(
      `monitor: automatic failover on: leader key ${c.dcs.etcd.prefix}/leader in etcd (${c.dcs.etcd.endpoints.join(', ')}), ttl ${c.failover.ttlMs} ms, renewed every ${c.failover.loopMs} ms, self-fence ${c.failover.ttlMs - c.failover.selfFenceMarginMs} ms after the last renewal`,
      {
        event: 'automatic-start',
        node: c.node.name,
        endpoints: c.dcs.etcd.endpoints,
        prefix: c.dcs.etcd.prefix,
        ttlMs: c.failover.ttlMs,
        loopMs: c.failover.loopMs,
      },
    );
    const auto = new AutoFailover(ctx, dcs);
    // A standby learns that the key is gone when etcd deletes it, not up to failover.loopMs later.
    dcs.watchLeaderGone(() => {
      auto.startCycle(ctx.ports.clock.now());
    });
    return auto;
  }

  /** Starts a store cycle unless one runs (every failover.loopMs, and when the leader key goes). */
  private startCycle(now: number): void {
    if (this.cycle !== undefined || this.stopped) {
      return;
    }
    this.lastCycleAt = now;
    this.cycle = this.runCycle().finally(() => {
      this.cycle = undefined;
    });
  }

  /** The peer probe's answer (the loop probes it in the background). */
  notePeer(peer: PeerSample | undefined, at: number): void {
    if (!peer) {
      return;
    }
    if (peer.inRecovery) {
      this.peerFollowingAt = at;
    } else if (!peer.readOnly) {
      this.peerWritableAt = at;
    }
  }

  private record(local: LocalSample | undefined, lsn?: string | null): Omit<LeaderRecord, 'term'> {
    return {
      node: this.ctx.config.node.name,
      timeline: local?.timeline ?? null,
      lsn: lsn ?? local?.currentLsn ?? null,
      sync: syncConfirmed(local),
      renewedAt: new Date(this.ctx.ports.clock.now()).toISOString(),
    };
  }

  private decide(now: number): LeaderAction {
    return decideLeader(
      {
        now,
        role: roleOf(this.local),
        fenced: this.fenced,
        view: this.view,
        viewAt: this.viewAt,
        holding: this.holding,
        startedAt: this.startedAt,
        peerFollowingAt: this.peerFollowingAt,
        peerWritableAt: this.peerWritableAt,
        takeoverRunning: this.takeover !== undefined,
      },
      this.ctx.config,
    );
  }

  /** Says why it acts or does not, once each time the kind of reason changes (numbers aside). */
  private say(reason: string): void {
    const kind = reason.replace(/[0-9][0-9.:TZ-]*/g, '#');
    if (kind !== this.lastReason) {
      this.ctx.reporter.event(`monitor: leader: ${reason}`, {
        event: 'leader',
        node: this.ctx.config.node.name,
        reason,
      });
      this.lastReason = kind;
    } else {
      this.ctx.reporter.log(`monitor: leader: ${reason}`);
    }
  }

  private fail(what: string, error: unknown): void {
    const text = `${what}: ${describeError(error)}`;
    if (text !== this.lastError) {
      this.ctx.reporter.event(`monitor: leader: ${text}`, {
        event: 'dcs-error',
        node: this.ctx.config.node.name,
        error: text,
      });
      this.lastError = text;
    }
  }

  /**
   * After each sample: starts a store cycle when one is due, and returns the fence the loop must perform
   * (deadline passed, superseded, or a crashed primary giving up the key), if any.
   */
  async tick(local: LocalSample | undefined, fenced: boolean): Promise<MonitorAction | undefined> {
    const now = this.ctx.ports.clock.now();
    this.local = local;
    this.fenced = fenced;
    if (local && !local.inRecovery && !local.readOnly) {
      this.lastPrimarySample = local;
    }
    this.downSamples = local ? 0 : this.downSamples + 1;
    if (now - this.lastCycleAt >= this.ctx.config.failover.loopMs) {
      this.startCycle(now);
    }
    if (fenced) {
      return undefined;
    }
    const crashed = await this.crashedPrimary();
    if (crashed) {
      return { action: 'fence', reason: crashed };
    }
    const d = this.decide(now);
    this.say(d.reason);
    return d.action === 'fence' ? { action: 'fence', reason: d.reason } : undefined;
  }

  /**
   * A primary holding the key whose PostgreSQL is down (not hung: no postmaster runs) while its standby
   * was confirming synchronously (or, asynchronous, within failover.maxLagBytes) at the last sample:
   * it fences itself and releases the key, so that the standby need not wait for the lease to expire.
   */
  private async crashedPrimary(): Promise<string | undefined> {
    const last = this.lastPrimarySample;
    if (!this.holding || this.downSamples < 2 || !last) {
      return undefined;
    }
    const config = this.ctx.config;
    const eligible = config.replication.synchronous
      ? syncConfirmed(last)
      : last.standby?.state === 'streaming' &&
        last.standby.flushLsn !== null &&
        last.currentLsn !== null &&
        lsnDiff(last.currentLsn, last.standby.flushLsn) <= config.failover.maxLagBytes;
    if (!eligible) {
      return undefined;
    }
    // A hung server is not a crashed one: only when no postmaster process is alive.
    const pidText = await this.ctx.ports.files
      .readTextIfExists(path.join(config.postgres.dataDir, 'postmaster.pid'))
      .catch(() => undefined);
    const pid = Number(pidText?.split('\n')[0]);
    if (Number.isInteger(pid) && pid > 0 && this.ctx.ports.proc.isAlive(pid)) {
      return undefined;
    }
    const facts = await gatherFenceFacts(this.ctx).catch(() => undefined);
    if (!facts || facts.running) {
      return undefined;
    }
    return `${config.node.name}'s PostgreSQL is down (no postmaster runs) and ${config.peer.name} was ${config.replication.synchronous ? 'confirming synchronously' : 'caught up'} at the last sample: fencing and releasing the leader key so that ${config.peer.name} takes over`;
  }

  /** After the loop fenced this node: give the key up at once (the standby need not wait for the TTL). */
  async afterFence(): Promise<void> {
    this.fenced = true;
    const h = this.holding;
    const last = this.lastPrimarySample;
    // Fenced until rejoin: nothing of this leadership may act later (a rejoin stops PostgreSQL, which
    // must not read as a crashed primary), whether or not etcd takes the release now.
    this.holding = undefined;
    this.lastPrimarySample = undefined;
    if (!h || h.leaseId === 'lost') {
      return;
    }
    try {
      const released = await this.dcs.release(h, { ...this.record(last), sync: syncConfirmed(last) });
      this.ctx.reporter.event(
        released
          ? `monitor: leader: released the leader key (term ${h.term}) after fencing`
          : `monitor: leader: the leader key of term ${h.term} was no longer this node's (expired or taken): nothing to release`,
        { event: released ? 'release' : 'release-none', node: this.ctx.config.node.name, term: h.term },
      );
    } catch (error) {
      this.fail('could not release the leader key (it expires with its lease)', error);
    }
  }

  /**
   * Before the loop degrades the primary to asynchronous: record sync: false in the leader key first, so
   * that a standby never promotes on a synchronous record while commits are acknowledged without it.
   * False (no degrade) when that cannot be written.
   */
  async beforeDegrade(local: LocalSample | undefined): Promise<boolean> {
    const h = this.holding;
    if (!h) {
      return false;
    }
    const sentAt = this.ctx.ports.clock.now();
    try {
      const ok = await this.dcs.renew(h, { ...this.record(local), sync: false });
      if (ok) {
        this.holding = { ...h, renewedAt: sentAt };
      }
      return ok;
    } catch (error) {
      this.fail('could not record the switch to asynchronous in etcd', error);
      return false;
    }
  }

  private async runCycle(): Promise<void> {
    try {
      this.view = await this.dcs.read();
      this.viewAt = this.ctx.ports.clock.now();
      this.viewError = undefined;
      this.lastError = '';
    } catch (error) {
      this.viewError = describeError(error);
      this.fail('etcd read failed', error);
    }
    const now = this.ctx.ports.clock.now();
    // A new primary renews while its takeover runs (it is still in recovery until the promotion).
    if (this.takeover !== undefined && this.holding) {
      await this.renew(now);
      return;
    }
    const d = this.decide(now);
    switch (d.action) {
      case 'renew':
        await this.renew(now);
        // A takeover interrupted after the promotion (a step failed, the monitor restarted) is finished
        // with the same plan: `failover`'s marker says so, and decideFailover answers 'complete'.
        if (
          this.takeover === undefined &&
          now - this.takeoverRefusedAt >= 5 * this.ctx.config.failover.loopMs &&
          (await this.ctx.ports.files.exists(statePaths(this.ctx.config).failoverMarker).catch(() => false))
        ) {
          this.takeover = this.runTakeover({
            action: 'takeover',
            expectedTerm: this.holding?.term ?? 0,
            lastLeader: undefined,
            reason: 'a takeover was interrupted',
          }).finally(() => {
            this.takeover = undefined;
          });
        }
        return;
      case 'acquire':
        await this.acquire(d.expectedTerm, d.keepTerm, now);
        return;
      case 'takeover':
        if (now - this.takeoverRefusedAt >= 5 * this.ctx.config.failover.loopMs) {
          this.takeover = this.runTakeover(d).finally(() => {
            this.takeover = undefined;
          });
        }
        return;
      case 'fence':
      case 'none':
        return;
    }
  }

  /** The view read before an acquisition is stale at once: it becomes what the transaction wrote. */
  private noteAcquired(h: Holding, record: Omit<LeaderRecord, 'term'>): void {
    if (this.view) {
      this.view = {
        ...this.view,
        leader: { ...record, term: h.term, leaseId: h.leaseId },
        term: h.term,
        lastLeader: { ...record, term: h.term },
      };
    }
  }

  private async renew(sentAt: number): Promise<void> {
    const h = this.holding;
    if (!h) {
      return;
    }
    try {
      const ok = await this.dcs.renew(h, this.record(this.local));
      if (ok) {
        this.holding = { ...h, renewedAt: sentAt };
      } else {
        // Keep the term: the next read shows whether the key is free (take it again) or taken (fence).
        this.holding = { ...h, leaseId: 'lost' };
        this.ctx.reporter.event(`monitor: leader: the lease of term ${h.term} is gone`, {
          event: 'lease-lost',
          node: this.ctx.config.node.name,
          term: h.term,
        });
      }
    } catch (error) {
      this.fail('renewal failed', error);
    }
  }

  private async acquire(expectedTerm: number, keepTerm: boolean, sentAt: number): Promise<void> {
    try {
      const h = await this.dcs.acquire(expectedTerm, this.record(this.local), keepTerm);
      if (h) {
        this.holding = { ...h, renewedAt: sentAt };
        this.noteAcquired(h, this.record(this.local));
        this.ctx.reporter.event(
          `monitor: leader: ${this.ctx.config.node.name} holds the leader key (term ${h.term})`,
          { event: 'acquire', node: this.ctx.config.node.name, term: h.term },
        );
      }
    } catch (error) {
      this.fail('acquisition failed', error);
    }
  }

  private async runTakeover(d: Extract<LeaderAction, { action: 'takeover' }>): Promise<void> {
    const { ctx } = this;
    const { config, reporter } = ctx;
    const me = config.node.name;
    const refuse = (reason: string): void => {
      this.takeoverRefusedAt = ctx.ports.clock.now();
      reporter.event(`monitor: leader: no takeover: ${reason}`, { event: 'no-takeover', node: me, reason });
    };
    try {
      // The peer is asked with the monitor's short peer timeout: a cut-off old primary must not hold
      // the takeover for the default connect timeout.
      const factsFrom = ctx.ports.clock.now();
      const facts = await gatherPairFacts(withShortPeerTimeouts(ctx));
      const factsMs = ctx.ports.clock.now() - factsFrom;
      const decision = decideFailover(facts, config, { force: false });
      if (decision.action === 'refuse') {
        refuse(decision.reason);
        return;
      }
      const server = facts.local.pg.server;
      const received = server?.receiveLsn ?? server?.replayLsn ?? null;
      const eligible =
        decision.action === 'complete'
          ? { ok: true as const, reason: 'finishing a takeover' }
          : takeoverEligibility(d.lastLeader, received, config);
      if (!eligible.ok) {
        refuse(eligible.reason);
        return;
      }
      let h: Holding | undefined = this.holding;
      if (decision.action === 'complete' && h) {
        reporter.event(`monitor: leader: finishing the interrupted takeover (term ${h.term})`, {
          event: 'takeover-resume',
          node: me,
          term: h.term,
        });
      } else {
        const sentAt = ctx.ports.clock.now();
        h = await this.dcs.acquire(d.expectedTerm, {
          node: me,
          timeline: server?.timeline ?? null,
          lsn: received,
          sync: false,
          renewedAt: new Date(sentAt).toISOString(),
        });
        if (!h) {
          refuse('another node took the leader key first');
          return;
        }
        this.holding = { ...h, renewedAt: sentAt };
        this.noteAcquired(h, { node: me, timeline: null, lsn: received, sync: false, renewedAt: '' });
        const acquireMs = ctx.ports.clock.now() - sentAt;
        reporter.event(
          `monitor: leader: ${me} took the leader key (term ${h.term}): ${d.reason}; ${eligible.reason}; failing over (facts ${factsMs} ms, etcd ${acquireMs} ms)`,
          {
            event: 'takeover',
            node: me,
            term: h.term,
            reason: d.reason,
            eligibility: eligible.reason,
            factsMs,
            acquireMs,
          },
        );
      }
      const rendered = renderManagedFiles(ctx, { role: 'primary' });
      const plan = planFailover({ facts, decision, config, primaryConf: rendered.chefHaConf });
      const started = ctx.ports.clock.now();
      await withLock(ctx, 'automatic failover', () => executePlan(ctx, plan, { dryRun: false }));
      reporter.event(
        `monitor: leader: ${me} is the primary now (term ${h.term}, ${((ctx.ports.clock.now() - started) / 1000).toFixed(2)} s); ${config.peer.name} must be rejoined with \`chef-ha-ctl rejoin\``,
        { event: 'failover', node: me, term: h.term },
      );
    } catch (error) {
      this.takeoverRefusedAt = ctx.ports.clock.now();
      this.fail('takeover failed (tried again)', error);
    }
  }

  /** For status of the monitor's own view (tests, logs). */
  state(): { view: DcsView | undefined; error: string | undefined; holding: Holding | undefined } {
    return { view: this.view, error: this.viewError, holding: this.holding };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.cycle;
    await this.takeover;
    this.dcs.close();
  }
}
