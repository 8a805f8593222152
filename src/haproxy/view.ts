/**
 * HAProxy knowledge, pure: the view templates/haproxy.cfg.hbs renders, the server-state seed, the backend
 * and server names the runtime API addresses, and the worst-case routing window `check` reports.
 */
import type { Config } from '../core/config.js';

/** Backends of the rendered config; servers are named after the nodes (config.node.name, peer.name). */
export const HAPROXY_BACKENDS = ['chef_api', 'postgres_primary', 'postgres_readonly'] as const;

export interface HaproxyServer {
  readonly name: string;
  readonly address: string;
  readonly chefApiPort: number;
  readonly postgresPort: number;
  readonly healthPort: number;
}

/** Both nodes, sorted by name so that either node renders the same file. */
export function pairServers(config: Config): HaproxyServer[] {
  return [
    {
      name: config.node.name,
      address: config.node.address,
      chefApiPort: config.haproxy.chefApiPort,
      postgresPort: config.postgres.port,
      healthPort: config.health.port,
    },
    {
      name: config.peer.name,
      address: config.peer.address,
      chefApiPort: config.haproxy.peerChefApiPort,
      postgresPort: config.peer.postgresPort,
      healthPort: config.peer.healthPort,
    },
  ].sort((a, b) => a.name.localeCompare(b.name));
}

/** The servers `failover` puts in maint for a node, as backend/server names. */
export function serversOf(name: string): string[] {
  return [
    `chef_api/${name}`,
    `postgres_primary/${name}`,
    `postgres_readonly/${name}`,
    `postgres_readonly/${name}-as-primary`,
  ];
}

export interface RouteWindow {
  /** Worst case from the moment a primary stops being one until HAProxy stops routing new connections to it. */
  readonly oldPrimaryMs: number;
  /** Worst case from a promotion until HAProxy routes to the new primary. */
  readonly newPrimaryMs: number;
  readonly formula: string;
}

/**
 * The worst case, from chef-ha's and HAProxy's timings. The health endpoint sees a change at its next
 * refresh (refreshMs, plus probeTimeoutMs for a slow probe). HAProxy checks an UP server every inter; the
 * first failed check puts it in transition, checked every fastinter, and it goes DOWN after `fall` failures;
 * each check may take up to `timeout check` on a node that does not answer.
 */
export function routeWindow(config: Config): RouteWindow {
  const h = config.health;
  const x = config.haproxy;
  const detect = h.refreshMs + h.probeTimeoutMs;
  const oldPrimaryMs =
    detect + x.interMs + x.checkTimeoutMs + (x.fall - 1) * (x.fastinterMs + x.checkTimeoutMs);
  const newPrimaryMs =
    detect + x.downinterMs + x.checkTimeoutMs + (x.rise - 1) * (x.fastinterMs + x.checkTimeoutMs);
  return {
    oldPrimaryMs,
    newPrimaryMs,
    formula: `health.refreshMs ${h.refreshMs} + health.probeTimeoutMs ${h.probeTimeoutMs} + inter ${x.interMs} + timeout check ${x.checkTimeoutMs} + (fall ${x.fall} - 1) x (fastinter ${x.fastinterMs} + timeout check ${x.checkTimeoutMs})`,
  };
}

/** The view of templates/haproxy.cfg.hbs. Pure. */
export function haproxyView(config: Config, chefHaVersion: string): Record<string, unknown> {
  const x = config.haproxy;
  const servers = pairServers(config);
  const w = routeWindow(config);
  return {
    chefHaVersion,
    pairNames: servers.map((s) => s.name).join(' / '),
    windowText: `${(w.oldPrimaryMs / 1000).toFixed(2)} s without the runtime API fence (${w.formula})`,
    maxConn: x.maxConn,
    socket: x.socket,
    runtimeApi: x.runtimeApi?.address ?? false,
    stateFile: x.stateFile,
    connectTimeoutMs: x.connectTimeoutMs,
    checkTimeoutMs: x.checkTimeoutMs,
    interMs: x.interMs,
    fastinterMs: x.fastinterMs,
    downinterMs: x.downinterMs,
    fall: x.fall,
    rise: x.rise,
    chefApi: x.chefApi,
    postgres: x.postgres,
    postgresReadOnly: x.postgresReadOnly,
    readLagBytes: x.readLagBytes,
    servers,
  };
}

/** The view of templates/haproxy-state.hbs: every checked server DOWN. Pure. */
export function haproxyStateView(config: Config): Record<string, unknown> {
  const servers = pairServers(config);
  const rows: Record<string, unknown>[] = [];
  HAPROXY_BACKENDS.forEach((backend, b) => {
    servers.forEach((s, i) => {
      rows.push({
        backendId: b + 3,
        backend,
        serverId: i + 1,
        server: s.name,
        address: s.address,
        port: backend === 'chef_api' ? s.chefApiPort : s.postgresPort,
        checkPort: s.healthPort,
      });
    });
  });
  return { rows };
}
