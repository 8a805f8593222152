/** check: validate config and environment, change nothing. Exit 0 when every check passes, 8 otherwise. */
import type { CommandContext } from '../../core/context.js';
import { gatherPairFacts } from '../../core/facts.js';
import { StatusExit, ExitCode } from '../../core/errors.js';
import type { PairFacts } from '../../core/facts.js';
import type { Config } from '../../core/config.js';
import { formatBytes } from '../../pg/lsn.js';
import { guardDropInPath } from '../../chef/paths.js';
import { routeWindow } from '../../haproxy/view.js';
import { checkTimings } from '../../monitor/leader.js';

/**
 * Automatic failover's timings (pure): each incoherent pair of settings fails with its fix, and the
 * worst-case RTO they give is printed.
 */
export function evaluateAutomatic(config: Config): CheckResult[] {
  if (!config.failover.automatic) {
    return [];
  }
  const t = checkTimings(config);
  const out: CheckResult[] = t.problems.map((p) => ({
    name: 'failover-timings',
    level: 'fail' as const,
    detail: `${p.problem}; ${p.fix}`,
  }));
  if (out.length === 0) {
    out.push({
      name: 'failover-timings',
      level: 'ok',
      detail: `renew every ${config.failover.loopMs} ms, self-fence ${config.failover.ttlMs - config.failover.selfFenceMarginMs} ms after the last renewal, lease ${config.failover.ttlMs} ms`,
    });
  }
  out.push({
    name: 'failover-rto',
    level: 'ok',
    detail: `worst-case RTO ${(t.worstRtoMs / 1000).toFixed(1)} s = ${t.rtoParts.map((p) => `${p.what} ${(p.ms / 1000).toFixed(1)} s`).join(' + ')} (a primary whose PostgreSQL crashes releases the key at once: much less)`,
  });
  return out;
}

/**
 * The HAProxy window (pure): how long HAProxy may still route to an old primary after it stops answering
 * 200 on /primary, against how long failover's proxy fence takes. With haproxy.runtimeApi, failover puts
 * the old master in maint before promoting and that takes at most runtimeApi.timeoutMs; without it the
 * health checks are the only cut-off, so an old master that this node cannot reach but the proxy can may
 * get clients for the whole window after the promotion.
 */
export function evaluateHaproxyWindow(config: Config): CheckResult {
  const w = routeWindow(config);
  const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
  const detail = `HAProxy may route to an old primary for up to ${s(w.oldPrimaryMs)} (${w.formula}); a new primary gets traffic within ${s(w.newPrimaryMs)}`;
  const api = config.haproxy.runtimeApi;
  if (!api) {
    return {
      name: 'haproxy-window',
      level: 'warn',
      detail: `${detail}; no proxy fence (haproxy.runtimeApi) is configured, so that window is not cut short by failover`,
    };
  }
  if (w.oldPrimaryMs > api.timeoutMs) {
    return {
      name: 'haproxy-window',
      level: 'ok',
      detail: `${detail}; failover's proxy fence at ${api.address} takes at most ${s(api.timeoutMs)} and comes first`,
    };
  }
  return {
    name: 'haproxy-window',
    level: 'warn',
    detail: `${detail}; failover's proxy fence may take up to ${s(api.timeoutMs)} (haproxy.runtimeApi.timeoutMs), longer than the checks`,
  };
}

/**
 * HAProxy's checks against the health endpoint's gap rule (pure): requests that come back after
 * health.recheckAfterGapMs without any, while the peer is unreachable, get 503 on /primary until the
 * peer has been probed again. Checks of an UP server every haproxy.interMs must never look like a gap.
 */
export function evaluateCheckGap(config: Config): CheckResult {
  const { interMs } = config.haproxy;
  const gapMs = config.health.recheckAfterGapMs;
  if (interMs * 2 > gapMs) {
    return {
      name: 'health-check-gap',
      level: 'warn',
      detail: `haproxy.interMs ${interMs} ms is more than half of health.recheckAfterGapMs ${gapMs} ms: one late check looks like a cut-off node, and a primary whose standby is down then answers 503 while it re-checks; raise health.recheckAfterGapMs above ${interMs * 2} ms or lower haproxy.interMs`,
    };
  }
  return {
    name: 'health-check-gap',
    level: 'ok',
    detail: `checks every ${interMs} ms; a gap of ${gapMs} ms means this node was cut off (health.recheckAfterGapMs)`,
  };
}

export interface CheckResult {
  readonly name: string;
  readonly level: 'ok' | 'warn' | 'fail';
  readonly detail: string;
}

/** Pure: facts → checks. */
export function evaluateChecks(facts: PairFacts, config: Config): CheckResult[] {
  const l = facts.local;
  const out: CheckResult[] = [{ name: 'config', level: 'ok', detail: 'valid' }];
  const missing = Object.entries(l.binaries)
    .filter(([, ok]) => !ok)
    .map(([b]) => b);
  out.push(
    missing.length === 0
      ? { name: 'postgresql-binaries', level: 'ok', detail: config.postgres.bindir }
      : {
          name: 'postgresql-binaries',
          level: 'fail',
          detail: `missing in ${config.postgres.bindir}: ${missing.join(', ')} (apt-get install postgresql-${config.postgres.version})`,
        },
  );
  out.push(
    l.osUserKnown
      ? { name: 'postgresql-os-user', level: 'ok', detail: config.postgres.osUser }
      : {
          name: 'postgresql-os-user',
          level: 'fail',
          detail: `OS user ${config.postgres.osUser} does not exist`,
        },
  );
  if (l.pg.running && l.pg.server) {
    const major = l.pg.server.major;
    out.push(
      major === config.postgres.version
        ? {
            name: 'postgresql',
            level: 'ok',
            detail: `running, PostgreSQL ${major}, ${l.pg.server.inRecovery ? 'standby' : 'primary'}`,
          }
        : {
            name: 'postgresql',
            level: 'fail',
            detail: `running PostgreSQL ${major}, but postgres.version says ${config.postgres.version}`,
          },
    );
  } else {
    out.push({
      name: 'postgresql',
      level: 'fail',
      detail: `not reachable on ${config.postgres.socketDir} port ${config.postgres.port}: ${l.pg.error ?? 'no answer'}`,
    });
  }
  out.push(
    l.ctlExecutable
      ? { name: 'chef-server-ctl', level: 'ok', detail: config.chefServer.ctl }
      : {
          name: 'chef-server-ctl',
          level: 'fail',
          detail: `${config.chefServer.ctl} missing or not executable`,
        },
  );
  out.push(
    l.etcDirExists
      ? { name: 'chef-server-etc', level: 'ok', detail: config.chefServer.etcDir }
      : { name: 'chef-server-etc', level: 'fail', detail: `${config.chefServer.etcDir} does not exist` },
  );
  const recipe = l.recipe;
  out.push(
    recipe.kind === 'override'
      ? { name: 'recipe', level: 'ok', detail: 'chef-ha override installed' }
      : recipe.kind === 'original'
        ? l.recordedOriginalSha256
          ? {
              name: 'recipe',
              level: 'fail',
              detail: `the original recipe is back (a package upgrade?): run \`chef-ha-ctl reconfigure\` or setup-* to re-apply the override`,
            }
          : {
              name: 'recipe',
              level: 'warn',
              detail: `original recipe (${recipe.origin ?? ''}); setup-* installs the override`,
            }
        : {
            name: 'recipe',
            level: 'fail',
            detail:
              recipe.kind === 'missing'
                ? `${recipe.path} missing`
                : `${recipe.path} is unrecognised (sha256 ${recipe.sha256 ?? '?'})`,
          },
  );
  out.push(
    l.secretPresent
      ? facts.peer.reachable
        ? {
            name: 'peer',
            level: 'ok',
            detail: `${config.peer.name} answers at ${config.peer.address}:${config.peer.postgresPort}`,
          }
        : {
            name: 'peer',
            level: 'warn',
            detail: `${config.peer.name} does not answer at ${config.peer.address}:${config.peer.postgresPort}: ${facts.peer.error ?? ''}`,
          }
      : { name: 'peer', level: 'warn', detail: 'not set up yet (no replication secret): peer not checked' },
  );
  out.push({
    name: 'disk',
    level: 'ok',
    detail: `${formatBytes(l.freeBytes)} free for ${config.postgres.dataDir}`,
  });
  if (config.haproxy.configured) {
    out.push(evaluateHaproxyWindow(config), evaluateCheckGap(config));
  }
  out.push(...evaluateAutomatic(config));
  if (config.postgres.manager === 'pg_ctlcluster' && l.systemdUnitDirExists) {
    out.push(
      l.files.guardDropIn !== undefined
        ? { name: 'pre-start-guard', level: 'ok', detail: `systemd drop-in ${guardDropInPath(config)}` }
        : {
            name: 'pre-start-guard',
            level: l.secretPresent ? 'warn' : 'ok',
            detail: l.secretPresent
              ? `no systemd drop-in ${guardDropInPath(config)}: a fenced or superseded old master could start writable; run setup-master or setup-slave again to install it`
              : 'not set up yet: setup-master / setup-slave install the systemd drop-in',
          },
    );
  } else if (config.postgres.preStartHook) {
    out.push({
      name: 'pre-start-guard',
      level: 'ok',
      detail: `postgres.preStartHook runs before chef-ha's own starts (no systemd drop-in for manager ${config.postgres.manager})`,
    });
  }
  if (l.fenced) {
    out.push({
      name: 'fence',
      level: 'warn',
      detail: `this node is fenced since ${l.fenced.at}: ${l.fenced.reason}`,
    });
  }
  return out;
}

export async function check(ctx: CommandContext): Promise<void> {
  const facts = await gatherPairFacts(ctx);
  const results = evaluateChecks(facts, ctx.config);
  const text = results
    .map((r) => `${r.level.toUpperCase().padEnd(4)}  ${r.name.padEnd(20)} ${r.detail}`)
    .join('\n');
  ctx.reporter.result(text, { checks: results });
  if (results.some((r) => r.level === 'fail')) {
    throw new StatusExit(ExitCode.StatusDegraded, '');
  }
}
