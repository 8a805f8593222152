/**
 * The health endpoint's decisions (DESIGN.md section 6), as one pure function: a snapshot, the clock and a
 * request in; status, headers and body out. The HTTP server (src/health/server.ts) only moves bytes.
 *
 * Paths follow Patroni's REST API, so HAProxy recipes written for Patroni work unchanged:
 *   /, /primary, /master, /read-write   200 when this node is a writable primary, not fenced, and sees no
 *                                       other primary and no newer timeline
 *   /standby, /replica[?lag=16MB]       200 when this node is a standby streaming from the primary (within lag)
 *   /read-only[?lag=]                   a healthy standby or the primary
 *   /health                             200 when PostgreSQL answers
 *   /status                             always 200, JSON
 *   /metrics                            always 200, Prometheus text
 */
import { lsnDiff } from '../pg/lsn.js';
import type { HealthSnapshot, ServerView } from './snapshot.js';

export interface HealthRequest {
  readonly method: string;
  /** The request target as received ("/replica?lag=16MB"). */
  readonly url: string;
}

export interface HealthContext {
  readonly now: number;
  /** A snapshot older than this is unknown. */
  readonly staleMs: number;
  /** When the role or the /primary answer last changed (ms since the epoch), if it did. */
  readonly lastChange?: number | undefined;
  /**
   * Set by the server when requests came back after a gap (health.recheckAfterGapMs) while the snapshot
   * had the peer unreachable: this node may have been cut off itself, and its peer may have been promoted
   * meanwhile. /primary answers 503 until a snapshot taken after the gap has looked at the peer again.
   */
  readonly peerRecheck?: { readonly gapMs: number } | undefined;
  /**
   * Kept by the server across snapshots (nextPeerSeenNewer): the peer was last seen on a newer timeline
   * than this node's. A later snapshot in which the peer does not answer does not undo that: /primary
   * stays 503 until the peer is seen again otherwise, or this node leaves the old timeline.
   */
  readonly peerSeenNewer?: PeerSeenNewer | undefined;
}

/** The peer seen on a newer timeline than this node's (streaming mode). */
export interface PeerSeenNewer {
  /** this node's timeline then */
  readonly timeline: number;
  readonly peerTimeline: number;
  /** when the snapshot that saw it was taken (ms since the epoch) */
  readonly at: number;
}

export interface HealthAnswer {
  readonly status: 200 | 204 | 400 | 404 | 405 | 503;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

export const ALLOWED_METHODS = 'GET, HEAD, OPTIONS';

const CHECK_PATHS = new Set([
  '/',
  '/primary',
  '/master',
  '/read-write',
  '/standby',
  '/replica',
  '/read-only',
  '/health',
]);

type Role = 'primary' | 'standby' | 'unknown';

/** What the snapshot means, computed once per request. Pure. */
export interface Evaluation {
  readonly known: boolean;
  readonly ageMs: number | null;
  readonly running: boolean;
  readonly role: Role;
  readonly writable: boolean;
  readonly fenced: boolean;
  /** Both this node and the peer answer as writable primaries. */
  readonly twoPrimaries: boolean;
  /** The peer is on a newer timeline than this node (this node is the old side of a failover). */
  readonly peerNewerTimeline: boolean;
  readonly primaryOk: boolean;
  readonly primaryReason: string;
  readonly streaming: boolean;
  readonly lagBytes: number | null;
  readonly lagSeconds: number | null;
  readonly syncState: string | null;
}

function isWritablePrimary(s: ServerView | undefined): boolean {
  return s !== undefined && !s.inRecovery && !s.readOnly;
}

/**
 * What a node remembers of its peer's timeline after a new snapshot. Pure. Seeing the peer on a newer
 * timeline is remembered; a snapshot that reaches the peer replaces the memory with what it sees; one
 * that does not (a lost connection, a busy peer) keeps it, unless this node itself has left the old
 * timeline (rejoined as a standby, or promoted past the peer). Without the memory, one probe of the peer
 * that failed right after the heal of a partition would let the old primary answer 200 again beside
 * the promoted peer.
 */
export function nextPeerSeenNewer(
  prev: PeerSeenNewer | undefined,
  snapshot: HealthSnapshot,
): PeerSeenNewer | undefined {
  if (snapshot.mode !== 'streaming') {
    return undefined;
  }
  const me = snapshot.local.reachable ? snapshot.local.server : undefined;
  const peer = snapshot.peer.reachable ? snapshot.peer.server : undefined;
  if (peer !== undefined) {
    const mine = me?.timeline ?? null;
    return mine !== null && peer.timeline !== null && peer.timeline > mine
      ? { timeline: mine, peerTimeline: peer.timeline, at: snapshot.takenAt }
      : undefined;
  }
  if (prev === undefined || me === undefined) {
    // this node's PostgreSQL did not answer either: keep what is known until it does
    return prev;
  }
  return me.inRecovery || (me.timeline !== null && me.timeline > prev.timeline) ? undefined : prev;
}

/** Reads the snapshot. Pure. */
export function evaluateSnapshot(snapshot: HealthSnapshot | undefined, ctx: HealthContext): Evaluation {
  const ageMs = snapshot ? Math.max(0, ctx.now - snapshot.takenAt) : null;
  const known = snapshot !== undefined && ageMs !== null && ageMs <= ctx.staleMs;
  const me = known ? snapshot.local.server : undefined;
  const peer = known && snapshot.peer.reachable ? snapshot.peer.server : undefined;
  const running = known && snapshot.local.reachable && me !== undefined;
  const role: Role = !running || !me ? 'unknown' : me.inRecovery ? 'standby' : 'primary';
  const writable = isWritablePrimary(me);
  const fenced = snapshot?.fenced !== undefined;
  const twoPrimaries = writable && isWritablePrimary(peer);
  const peerNewerTimeline =
    me?.timeline !== null &&
    me?.timeline !== undefined &&
    peer?.timeline !== null &&
    peer?.timeline !== undefined &&
    peer.timeline > me.timeline;
  let primaryReason: string;
  if (!snapshot) {
    primaryReason = 'no snapshot yet';
  } else if (!known) {
    primaryReason = `snapshot is ${ageMs ?? '?'} ms old (stale after ${ctx.staleMs} ms)`;
  } else if (!running) {
    primaryReason = `PostgreSQL does not answer (${snapshot.local.error ?? 'no answer'})`;
  } else if (fenced) {
    primaryReason = `fenced since ${snapshot.fenced?.at ?? '?'} (${snapshot.fenced?.reason ?? ''})`;
  } else if (role !== 'primary') {
    primaryReason = 'standby';
  } else if (!writable) {
    primaryReason = 'read-only primary (default_transaction_read_only)';
  } else if (twoPrimaries) {
    primaryReason = `${snapshot.peerName} answers as a writable primary too`;
  } else if (peerNewerTimeline) {
    primaryReason = `${snapshot.peerName} is on a newer timeline (${peer?.timeline ?? '?'} > ${me?.timeline ?? '?'})`;
  } else if (ctx.peerSeenNewer && !snapshot.peer.reachable) {
    primaryReason = `${snapshot.peerName} was seen on a newer timeline (${ctx.peerSeenNewer.peerTimeline} > ${ctx.peerSeenNewer.timeline}) at ${new Date(ctx.peerSeenNewer.at).toISOString()} and has not answered since`;
  } else if (ctx.peerRecheck && !snapshot.peer.reachable) {
    primaryReason = `requests came back after ${ctx.peerRecheck.gapMs} ms without any while ${snapshot.peerName} was unreachable (this node may have been cut off): re-checking ${snapshot.peerName} first`;
  } else {
    primaryReason = 'writable primary';
  }
  const primaryOk = primaryReason === 'writable primary';
  // Lag of this standby behind the primary: the primary's write position minus what was replayed here.
  const myRow = peer?.standbys.find((s) => s.name === snapshot?.node);
  let lagBytes: number | null = null;
  let lagSeconds: number | null = null;
  let syncState: string | null = null;
  if (role === 'standby' && me) {
    if (peer && !peer.inRecovery && peer.currentLsn && me.replayLsn) {
      lagBytes = Math.max(0, lsnDiff(peer.currentLsn, me.replayLsn));
    }
    lagSeconds = myRow?.lagSeconds ?? null;
    syncState = myRow?.syncState ?? null;
  } else if (role === 'primary' && me) {
    const worst = me.standbys.reduce<number | null>(
      (acc, s) => (s.lagBytes === null ? acc : Math.max(acc ?? 0, s.lagBytes)),
      null,
    );
    lagBytes = worst;
    lagSeconds = me.standbys.reduce<number | null>(
      (acc, s) => (s.lagSeconds === null ? acc : Math.max(acc ?? 0, s.lagSeconds)),
      null,
    );
    syncState = me.standbys.length === 0 ? 'none' : me.standbys.map((s) => s.syncState).join(',');
  }
  const streaming = role === 'standby' && me?.walReceiver === 'streaming' && !fenced && !peerNewerTimeline;
  return {
    known,
    ageMs,
    running,
    role,
    writable,
    fenced,
    twoPrimaries,
    peerNewerTimeline,
    primaryOk,
    primaryReason,
    streaming,
    lagBytes,
    lagSeconds,
    syncState,
  };
}

const UNITS: Readonly<Record<string, number>> = {
  '': 1,
  b: 1,
  kb: 1024,
  mb: 1024 ** 2,
  gb: 1024 ** 3,
  tb: 1024 ** 4,
};

/** Parses a lag bound: "1048576", "16MB", "512 kB" (units of 1024, as PostgreSQL's). Pure. */
export function parseLagBound(text: string): number | undefined {
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]{0,2})\s*$/.exec(text);
  if (!m) {
    return undefined;
  }
  const factor = UNITS[(m[2] ?? '').toLowerCase()];
  if (factor === undefined) {
    return undefined;
  }
  const value = Number(m[1]) * factor;
  return Number.isFinite(value) ? Math.floor(value) : undefined;
}

function textAnswer(
  status: HealthAnswer['status'],
  body: string,
  extra: Record<string, string> = {},
): HealthAnswer {
  return {
    status,
    headers: { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...extra },
    body: `${body}\n`,
  };
}

/** The /status document. Pure. */
export function statusDocument(
  snapshot: HealthSnapshot | undefined,
  e: Evaluation,
  ctx: HealthContext,
): Record<string, unknown> {
  const me = snapshot?.local.server;
  const peer = snapshot?.peer.server;
  return {
    node: snapshot?.node ?? null,
    state: !e.known ? 'unknown' : e.running ? 'running' : 'stopped',
    role: e.role,
    writable: e.writable,
    fenced: snapshot?.fenced ?? null,
    timeline: me?.timeline ?? null,
    lsn: { current: me?.currentLsn ?? null, receive: me?.receiveLsn ?? null, replay: me?.replayLsn ?? null },
    lag: { bytes: e.lagBytes, seconds: e.lagSeconds },
    mode: snapshot?.mode ?? null,
    sync_state: e.syncState,
    standbys: me?.standbys ?? [],
    wal_receiver: me?.walReceiver ?? null,
    peer: {
      name: snapshot?.peerName ?? null,
      reachable: snapshot?.peer.reachable ?? false,
      role: !peer ? 'unknown' : peer.inRecovery ? 'standby' : 'primary',
      writable: isWritablePrimary(peer),
      timeline: peer?.timeline ?? null,
      ...(snapshot?.peer.error ? { error: snapshot.peer.error } : {}),
    },
    degraded_since: snapshot?.degraded?.since ?? null,
    degraded: snapshot?.degraded ?? null,
    checks: {
      primary: e.primaryOk ? 200 : 503,
      primary_reason: e.primaryReason,
      standby: e.streaming ? 200 : 503,
    },
    two_primaries: e.twoPrimaries,
    peer_seen_newer:
      ctx.peerSeenNewer === undefined
        ? null
        : {
            timeline: ctx.peerSeenNewer.timeline,
            peer_timeline: ctx.peerSeenNewer.peerTimeline,
            at: new Date(ctx.peerSeenNewer.at).toISOString(),
          },
    snapshot_age_ms: e.ageMs,
    stale_after_ms: ctx.staleMs,
    last_change: ctx.lastChange === undefined ? null : new Date(ctx.lastChange).toISOString(),
  };
}

function metricLine(name: string, help: string, type: 'gauge', value: number | null, label: string): string {
  return `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name}{${label}} ${value === null ? 'NaN' : String(value)}\n`;
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** The /metrics text (Prometheus exposition format 0.0.4). Pure. */
export function metricsText(snapshot: HealthSnapshot | undefined, e: Evaluation): string {
  const label = `node="${escapeLabel(snapshot?.node ?? '')}"`;
  const me = snapshot?.local.server;
  const degradedSince = snapshot?.degraded ? Date.parse(snapshot.degraded.since) / 1000 : 0;
  const syncStandby = me?.standbys.some((s) => s.syncState === 'sync') ? 1 : 0;
  const iAmSync = e.role === 'standby' && e.syncState === 'sync' ? 1 : 0;
  return [
    metricLine(
      'chef_ha_up',
      '1 when the snapshot is fresh and PostgreSQL answers',
      'gauge',
      e.running ? 1 : 0,
      label,
    ),
    metricLine(
      'chef_ha_primary',
      '1 when this node answers 200 on /primary',
      'gauge',
      e.primaryOk ? 1 : 0,
      label,
    ),
    metricLine(
      'chef_ha_standby',
      '1 when this node is a streaming standby',
      'gauge',
      e.streaming ? 1 : 0,
      label,
    ),
    metricLine(
      'chef_ha_role',
      'role of this node: 1 primary, 0 standby, -1 unknown',
      'gauge',
      e.role === 'primary' ? 1 : e.role === 'standby' ? 0 : -1,
      label,
    ),
    metricLine('chef_ha_timeline', 'timeline of this node', 'gauge', me?.timeline ?? null, label),
    metricLine(
      'chef_ha_lag_bytes',
      'replication lag in bytes (standby: behind the primary; primary: worst standby)',
      'gauge',
      e.lagBytes,
      label,
    ),
    metricLine(
      'chef_ha_lag_seconds',
      'replay lag in seconds as the primary measures it',
      'gauge',
      e.lagSeconds,
      label,
    ),
    metricLine(
      'chef_ha_sync',
      '1 when replication is synchronous (primary: a sync standby is attached; standby: it is the sync one)',
      'gauge',
      e.role === 'primary' ? syncStandby : iAmSync,
      label,
    ),
    metricLine('chef_ha_fenced', '1 when this node is fenced', 'gauge', e.fenced ? 1 : 0, label),
    metricLine(
      'chef_ha_two_primaries',
      '1 when this node and its peer both answer as writable primaries',
      'gauge',
      e.twoPrimaries ? 1 : 0,
      label,
    ),
    metricLine(
      'chef_ha_degraded_since_seconds',
      'unix time since which the primary runs asynchronous after losing its sync standby (0: not degraded)',
      'gauge',
      Number.isFinite(degradedSince) ? degradedSince : 0,
      label,
    ),
    metricLine(
      'chef_ha_peer_reachable',
      '1 when the peer PostgreSQL answered the last probe',
      'gauge',
      snapshot?.peer.reachable ? 1 : 0,
      label,
    ),
    metricLine(
      'chef_ha_snapshot_age_seconds',
      'age of the snapshot the answers come from',
      'gauge',
      e.ageMs === null ? null : e.ageMs / 1000,
      label,
    ),
  ].join('');
}

/** Answers one request. Pure; never throws. */
export function answer(
  snapshot: HealthSnapshot | undefined,
  req: HealthRequest,
  ctx: HealthContext,
): HealthAnswer {
  const method = req.method.toUpperCase();
  let url: URL;
  try {
    if (!req.url.startsWith('/')) {
      return textAnswer(400, 'bad request target');
    }
    url = new URL(req.url, 'http://health.invalid');
  } catch {
    return textAnswer(400, 'bad request target');
  }
  const path = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, '') : url.pathname;
  const known = CHECK_PATHS.has(path) || path === '/status' || path === '/metrics';
  if (!known) {
    return textAnswer(404, `unknown path ${path.slice(0, 100)}`);
  }
  if (method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS') {
    return textAnswer(405, `method ${method.slice(0, 20)} not allowed`, { allow: ALLOWED_METHODS });
  }
  const withAllow = method === 'OPTIONS' ? { allow: ALLOWED_METHODS } : {};
  let lagBound: number | undefined;
  const lagParam = url.searchParams.get('lag');
  if (lagParam !== null) {
    lagBound = parseLagBound(lagParam);
    if (lagBound === undefined) {
      return textAnswer(400, `bad lag bound "${lagParam.slice(0, 40)}": use bytes or a size such as 16MB`);
    }
  }
  const e = evaluateSnapshot(snapshot, ctx);
  if (path === '/status') {
    return {
      status: 200,
      headers: { 'content-type': 'application/json', 'cache-control': 'no-store', ...withAllow },
      body: `${JSON.stringify(statusDocument(snapshot, e, ctx))}\n`,
    };
  }
  if (path === '/metrics') {
    return {
      status: 200,
      headers: {
        'content-type': 'text/plain; version=0.0.4; charset=utf-8',
        'cache-control': 'no-store',
        ...withAllow,
      },
      body: metricsText(snapshot, e),
    };
  }
  const lagOk = (): boolean => lagBound === undefined || (e.lagBytes !== null && e.lagBytes <= lagBound);
  let ok: boolean;
  let why: string;
  switch (path) {
    case '/health':
      ok = e.running;
      why = ok ? 'running' : e.primaryReason;
      break;
    case '/standby':
    case '/replica':
      ok = e.streaming && lagOk();
      why = ok
        ? 'streaming standby'
        : !e.known || !e.running
          ? e.primaryReason
          : e.role !== 'standby'
            ? e.role
            : !e.streaming
              ? e.fenced
                ? 'fenced'
                : 'standby not streaming'
              : `lag ${e.lagBytes ?? 'unknown'} bytes over ${lagBound ?? 0}`;
      break;
    case '/read-only':
      ok = e.primaryOk || (e.streaming && lagOk());
      why = ok ? (e.primaryOk ? 'writable primary' : 'streaming standby') : e.primaryReason;
      break;
    default:
      ok = e.primaryOk;
      why = e.primaryReason;
  }
  return textAnswer(ok ? 200 : 503, why, withAllow);
}
