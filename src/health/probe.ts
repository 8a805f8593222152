/**
 * The health snapshot's refresh: reads this node's PostgreSQL (psql over the socket, as `status` does),
 * the peer's (TCP as the replication role) and the two state files, each with a short timeout. Read-only.
 */
import type { CommandContext } from '../core/context.js';
import { localTarget, peerTarget, statePaths } from '../core/context.js';
import { slotNameFor } from '../core/config.js';
import { describeError } from '../core/errors.js';
import { readServer, type ServerFacts } from '../core/facts.js';
import type { HealthSnapshot, NodeView, ServerView } from './snapshot.js';

function toView(s: ServerFacts, names: ReadonlyMap<string, string>): ServerView {
  return {
    inRecovery: s.inRecovery,
    readOnly: s.readOnlyDefault,
    timeline: s.timeline,
    currentLsn: s.currentLsn,
    receiveLsn: s.receiveLsn,
    replayLsn: s.replayLsn,
    replayAgeS: s.replayAgeS,
    walReceiver: s.walReceiver?.status ?? null,
    standbys: s.replication.map((r) => ({
      name: names.get(r.application_name) ?? r.application_name,
      state: r.state,
      syncState: r.sync_state,
      // bigint columns may arrive as strings from node-postgres
      lagBytes: r.lag_bytes === null ? null : Number(r.lag_bytes as number | string),
      lagSeconds: r.replay_lag_s,
    })),
  };
}

type Json = Readonly<Record<string, unknown>>;

/** A JSON value written by another process, as text for the snapshot. */
function text(v: unknown): string {
  return typeof v === 'string' ? v : v === undefined ? 'unknown' : JSON.stringify(v);
}

async function readJson(ctx: CommandContext, file: string, unreadable: Json): Promise<Json | undefined> {
  let raw: string | undefined;
  try {
    raw = await ctx.ports.files.readTextIfExists(file);
  } catch {
    return unreadable;
  }
  if (raw === undefined) {
    return undefined;
  }
  try {
    const parsed: unknown = JSON.parse(raw);
    return typeof parsed === 'object' && parsed !== null ? (parsed as Json) : unreadable;
  } catch {
    return unreadable;
  }
}

/**
 * Takes one snapshot. Never throws: what does not answer in time is recorded as unreachable.
 * An unreadable fence record counts as fenced (fail closed).
 */
export async function probeHealth(ctx: CommandContext): Promise<HealthSnapshot> {
  const { config } = ctx;
  const timeoutMs = config.health.probeTimeoutMs;
  const names = new Map([
    [slotNameFor(config.node.name), config.node.name],
    [slotNameFor(config.peer.name), config.peer.name],
  ]);
  const local = async (): Promise<NodeView> => {
    try {
      const target = localTarget(config);
      const { server } = await readServer(
        <T>(sql: string) => ctx.ports.pg.queryLocal<T>(target, 'postgres', sql, timeoutMs),
        config.postgres.version,
        () => ({}),
      );
      return { reachable: true, server: toView(server, names) };
    } catch (error) {
      return { reachable: false, error: describeError(error).split('\n')[0] ?? 'no answer' };
    }
  };
  const peer = async (): Promise<NodeView> => {
    const password = await ctx.secrets.read('replication').catch(() => undefined);
    if (!password) {
      return { reachable: false, error: 'no replication secret yet' };
    }
    try {
      const target = { ...peerTarget(config, password, timeoutMs), statementTimeoutMs: timeoutMs };
      const { server } = await readServer(
        <T>(sql: string) => ctx.ports.pg.queryPeer<T>(target, sql),
        config.postgres.version,
        () => ({}),
      );
      return { reachable: true, server: toView(server, names) };
    } catch (error) {
      return { reachable: false, error: describeError(error).split('\n')[0] ?? 'no answer' };
    }
  };
  const paths = statePaths(config);
  const [l, p, fenced, degraded] = await Promise.all([
    local(),
    peer(),
    readJson(ctx, paths.fence, {
      at: 'unknown',
      reason: 'unreadable fence record',
    }),
    readJson(ctx, paths.degraded, {
      since: 'unknown',
      lsn: 'unknown',
      standby: 'unknown',
    }),
  ]);
  return {
    takenAt: ctx.ports.clock.now(),
    node: config.node.name,
    peerName: config.peer.name,
    mode: config.replication.mode,
    local: l,
    peer: p,
    ...(fenced ? { fenced: { at: text(fenced['at']), reason: text(fenced['reason']) } } : {}),
    ...(degraded
      ? {
          degraded: {
            since: text(degraded['since']),
            lsn: text(degraded['lsn']),
            standby: text(degraded['standby']),
          },
        }
      : {}),
  };
}
