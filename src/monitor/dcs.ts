/**
 * The consensus store of automatic failover: etcd through the npm `etcd3` client, imported lazily (it
 * loads gRPC, about 350 ms) so that commands without etcd never pay for it.
 *
 * Keys under dcs.etcd.prefix (default /chef-ha/<cluster>):
 *   leader        JSON LeaderRecord, attached to a lease of failover.ttlMs; created only by a
 *                 transaction that requires it absent (createRevision == 0), never overwritten by
 *                 another node; renewed by keepalive of its lease plus a put guarded by the lease id
 *   term          a counter: every takeover (an acquisition by another node than the last holder, or
 *                 the first) writes term+1 in the same transaction as the leader key, guarded by the
 *                 term's value read before (so two racing nodes cannot both win); the last holder taking
 *                 its own expired key again keeps the term, under the same guard
 *   last-leader   the leader record as last written by its holder, without a lease: what a standby reads
 *                 once the leader key has expired (was it synchronous at the last renewal, which LSN)
 *   paused        present: automatic actions are paused cluster-wide (`chef-ha-ctl pause`)
 */
import type { Watcher } from 'etcd3';
import type { Config } from '../core/config.js';

/** The leader key's value. */
export interface LeaderRecord {
  readonly node: string;
  readonly term: number;
  readonly timeline: number | null;
  readonly lsn: string | null;
  /** The standby confirmed synchronously at this renewal (sync mode in force and streaming sync). */
  readonly sync: boolean;
  /** ISO-8601 time of the renewal, by the holder's clock. */
  readonly renewedAt: string;
  /** Set in last-leader when the holder fenced itself and gave the key up (no need to wait for it). */
  readonly released?: boolean;
}

/** What one read of the store shows. */
export interface DcsView {
  readonly leader: (LeaderRecord & { readonly leaseId: string }) | undefined;
  /** Remaining TTL of the leader's lease in ms, when known. */
  readonly leaseRemainingMs: number | undefined;
  readonly term: number;
  readonly lastLeader: LeaderRecord | undefined;
  readonly paused: { readonly at: string; readonly by: string; readonly reason: string } | undefined;
}

/** A held leadership. */
export interface Holding {
  readonly leaseId: string;
  readonly term: number;
}

export interface Dcs {
  read(): Promise<DcsView>;
  /**
   * Creates the leader key under a new lease if it is absent and the term is still expectedTerm; writes
   * term+1 (a takeover, or the first holder), or keeps the term when `keepTerm` (the last holder taking
   * its own key again). Resolves undefined when another node won (or the term moved on).
   */
  acquire(
    expectedTerm: number,
    record: Omit<LeaderRecord, 'term'>,
    keepTerm?: boolean,
  ): Promise<Holding | undefined>;
  /** Keepalive of the lease, then the record; false when the lease is gone or the key is not ours. */
  renew(holding: Holding, record: Omit<LeaderRecord, 'term'>): Promise<boolean>;
  /**
   * Revokes the lease (the key goes at once) after writing last-leader with released: true; false when
   * the key was no longer this lease's (expired or taken): nothing is written then.
   */
  release(holding: Holding, record: Omit<LeaderRecord, 'term'>): Promise<boolean>;
  setPaused(paused: { at: string; by: string; reason: string } | undefined): Promise<void>;
  /**
   * Calls `gone` each time the leader key is deleted (its lease expired or was revoked), from an etcd
   * watch: a standby need not wait for its next read to learn that the key is free. Only a hint: the
   * reads decide, and a watch that cannot be set up (etcd unreachable) is tried again every second.
   */
  watchLeaderGone(gone: () => void): void;
  close(): void;
}

export function dcsKeys(config: Config): {
  leader: string;
  term: string;
  lastLeader: string;
  paused: string;
} {
  const p = config.dcs.etcd.prefix;
  return { leader: `${p}/leader`, term: `${p}/term`, lastLeader: `${p}/last-leader`, paused: `${p}/paused` };
}

/** Parses a stored leader record; undefined when absent or not one. */
export function parseLeaderRecord(text: string | null | undefined): LeaderRecord | undefined {
  if (text === null || text === undefined) {
    return undefined;
  }
  try {
    const r = JSON.parse(text) as Partial<LeaderRecord>;
    if (typeof r.node !== 'string' || typeof r.term !== 'number') {
      return undefined;
    }
    return {
      node: r.node,
      term: r.term,
      timeline: typeof r.timeline === 'number' ? r.timeline : null,
      lsn: typeof r.lsn === 'string' ? r.lsn : null,
      sync: r.sync === true,
      renewedAt: typeof r.renewedAt === 'string' ? r.renewedAt : new Date(0).toISOString(),
      ...(r.released === true ? { released: true } : {}),
    };
  } catch {
    return undefined;
  }
}

/** Rejects after ms: every etcd call has a deadline, so an unreachable member is an answer, not a hang. */
function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => {
        reject(new Error(`etcd did not answer ${what} within ${ms} ms`));
      }, ms);
    }),
  ]).finally(() => {
    clearTimeout(timer);
  });
}

/** Connects the etcd3 client (lazily imported). Nothing is sent until the first call. */
export async function openEtcdDcs(config: Config): Promise<Dcs> {
  const [{ Etcd3, isRecoverableError }, { noop, retry, handleWhen }] = await Promise.all([
    import('etcd3'),
    import('cockatiel'),
  ]);
  const e = config.dcs.etcd;
  const client = new Etcd3({
    hosts: [...e.endpoints],
    dialTimeout: e.dialTimeoutMs,
    defaultCallOptions: (c) => (c.isStream ? {} : { deadline: Date.now() + e.requestTimeoutMs }),
    // No circuit breaker (the client's default stops calling a member for 5 s after three failures,
    // which would hold renewals back after a cut heals); a failed call moves on to the next member,
    // and the monitor's loop is the retry.
    faultHandling: {
      host: () => noop,
      global:
        e.endpoints.length > 1
          ? retry(handleWhen(isRecoverableError), { maxAttempts: e.endpoints.length - 1 })
          : noop,
    },
  });
  const keys = dcsKeys(config);
  const ttlS = Math.round(config.failover.ttlMs / 1000);
  const t = e.requestTimeoutMs;
  type LeaseHandle = ReturnType<typeof client.lease>;
  const leases = new Map<string, LeaseHandle>();
  let watcher: Watcher | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let closed = false;
  const value = (term: number, record: Omit<LeaderRecord, 'term'>, released = false): string =>
    JSON.stringify({ ...record, term, ...(released ? { released: true } : {}) });
  return {
    async read() {
      const r = await deadline(client.getAll().prefix(`${config.dcs.etcd.prefix}/`).exec(), t, 'a read');
      const get = (k: string) => r.kvs.find((kv) => kv.key.toString() === k);
      const leaderKv = get(keys.leader);
      const leaderRec = parseLeaderRecord(leaderKv?.value.toString());
      let leaseRemainingMs: number | undefined;
      if (leaderKv && leaderKv.lease !== '0') {
        const ttl = await deadline(
          client.leaseClient.leaseTimeToLive({ ID: leaderKv.lease, keys: false }),
          t,
          'a lease query',
        ).catch(() => undefined);
        leaseRemainingMs = ttl === undefined ? undefined : Math.max(0, Number(ttl.TTL) * 1000);
      }
      const pausedText = get(keys.paused)?.value.toString();
      let paused: DcsView['paused'];
      if (pausedText !== undefined) {
        try {
          const p = JSON.parse(pausedText) as { at?: string; by?: string; reason?: string };
          paused = { at: p.at ?? '?', by: p.by ?? '?', reason: p.reason ?? '' };
        } catch {
          paused = { at: '?', by: '?', reason: pausedText };
        }
      }
      const termText = get(keys.term)?.value.toString();
      return {
        leader: leaderRec && leaderKv ? { ...leaderRec, leaseId: leaderKv.lease } : undefined,
        leaseRemainingMs,
        term: termText === undefined ? 0 : Number(termText) || 0,
        lastLeader: parseLeaderRecord(get(keys.lastLeader)?.value.toString()),
        paused,
      };
    },
    async acquire(expectedTerm, record, keepTerm = false) {
      const lease = client.lease(ttlS, { autoKeepAlive: false });
      lease.on('lost', () => undefined);
      const leaseId = await deadline(lease.grant(), t, 'a lease grant');
      const term = keepTerm && expectedTerm > 0 ? expectedTerm : expectedTerm + 1;
      const txn =
        expectedTerm === 0
          ? client.if(keys.leader, 'Create', '==', 0).and(keys.term, 'Create', '==', 0)
          : client.if(keys.leader, 'Create', '==', 0).and(keys.term, 'Value', '==', String(expectedTerm));
      const r = await deadline(
        txn
          .then(
            client.put(keys.leader).value(value(term, record)).lease(leaseId),
            client.put(keys.term).value(String(term)),
            client.put(keys.lastLeader).value(value(term, record)),
          )
          .commit(),
        t,
        'the acquisition',
      );
      if (!r.succeeded) {
        await lease.revoke().catch(() => undefined);
        return undefined;
      }
      leases.set(leaseId, lease);
      return { leaseId, term };
    },
    async renew(holding, record) {
      const lease = leases.get(holding.leaseId);
      if (!lease) {
        return false;
      }
      try {
        const ka = await deadline(lease.keepaliveOnce(), t, 'a keepalive');
        if (Number(ka.TTL) <= 0) {
          return false;
        }
      } catch (error) {
        if (
          error instanceof Error &&
          (error.constructor.name === 'EtcdLeaseInvalidError' || /expired or revoked/.test(error.message))
        ) {
          leases.delete(holding.leaseId);
          return false;
        }
        throw error;
      }
      const r = await deadline(
        client
          .if(keys.leader, 'Lease', '==', holding.leaseId)
          .and(keys.term, 'Value', '==', String(holding.term))
          .then(
            client.put(keys.leader).value(value(holding.term, record)).lease(holding.leaseId),
            client.put(keys.lastLeader).value(value(holding.term, record)),
          )
          .commit(),
        t,
        'the renewal',
      );
      return r.succeeded;
    },
    async release(holding, record) {
      const r = await deadline(
        client
          .if(keys.leader, 'Lease', '==', holding.leaseId)
          .then(client.put(keys.lastLeader).value(value(holding.term, record, true)))
          .commit(),
        t,
        'the release record',
      );
      const lease = leases.get(holding.leaseId);
      leases.delete(holding.leaseId);
      if (!r.succeeded) {
        lease?.removeAllListeners();
        return false;
      }
      if (lease) {
        await deadline(lease.revoke(), t, 'the lease revocation');
      } else {
        await deadline(client.leaseClient.leaseRevoke({ ID: holding.leaseId }), t, 'the lease revocation');
      }
      return true;
    },
    async setPaused(paused) {
      if (paused === undefined) {
        await deadline(client.delete().key(keys.paused).exec(), t, 'the resume');
      } else {
        await deadline(client.put(keys.paused).value(JSON.stringify(paused)).exec(), t, 'the pause');
      }
    },
    watchLeaderGone(gone) {
      const start = (): void => {
        client
          .watch()
          .key(keys.leader)
          .create()
          .then(
            (w) => {
              if (closed) {
                void w.cancel().catch(() => undefined);
                return;
              }
              watcher = w;
              w.on('delete', () => {
                gone();
              });
              w.on('error', () => undefined);
            },
            () => {
              if (!closed) {
                retryTimer = setTimeout(start, 1000);
              }
            },
          );
      };
      start();
    },
    close() {
      closed = true;
      clearTimeout(retryTimer);
      void watcher?.cancel().catch(() => undefined);
      for (const lease of leases.values()) {
        lease.removeAllListeners();
      }
      client.close();
    },
  };
}
