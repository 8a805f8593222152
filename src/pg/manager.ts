/**
 * argv for starting, stopping and promoting the distribution cluster, by manager: Debian's pg_ctlcluster
 * (production) or plain pg_ctl with the Debian layout's config dir (the sandbox, unusual installs).
 */
import type { Config } from '../core/config.js';

export type ServiceVerb = 'start' | 'stop' | 'restart' | 'reload' | 'promote';

export interface ServiceCommand {
  readonly argv: [string, ...string[]];
  /** OS user to run as (pg_ctl must not run as root; pg_ctlcluster handles it itself). */
  readonly user?: string;
  readonly timeoutMs: number;
}

/** The command for a verb. Pure. `stopMode` matters for stop and restart. */
export function renderServiceCommand(
  config: Config,
  verb: ServiceVerb,
  stopMode: 'fast' | 'immediate' = 'fast',
): ServiceCommand {
  const pgc = config.postgres;
  if (pgc.manager === 'pg_ctlcluster') {
    const argv: [string, ...string[]] = ['pg_ctlcluster', pgc.version, pgc.cluster, verb];
    if (verb === 'stop' || verb === 'restart') {
      argv.push('-m', stopMode);
    }
    return { argv, timeoutMs: 120_000 };
  }
  const base: [string, ...string[]] = [`${pgc.bindir}/pg_ctl`, '-D', pgc.dataDir];
  switch (verb) {
    case 'start':
    case 'restart':
      return {
        argv: [
          ...base,
          '-o',
          `-c config_file=${pgc.confDir}/postgresql.conf`,
          '-l',
          pgc.logFile,
          ...(verb === 'restart' ? ['-m', stopMode] : []),
          '-w',
          '-t',
          '60',
          verb,
        ],
        user: pgc.osUser,
        timeoutMs: 120_000,
      };
    case 'stop':
      return {
        argv: [...base, '-m', stopMode, '-w', '-t', '60', 'stop'],
        user: pgc.osUser,
        timeoutMs: 90_000,
      };
    case 'reload':
      return { argv: [...base, 'reload'], user: pgc.osUser, timeoutMs: 30_000 };
    case 'promote':
      return {
        argv: [...base, '-w', '-t', String(Math.ceil(config.failover.promoteTimeoutMs / 1000)), 'promote'],
        user: pgc.osUser,
        timeoutMs: config.failover.promoteTimeoutMs + 5_000,
      };
  }
}
