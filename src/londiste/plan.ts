/**
 * Step builders shared by the Londiste planners (setup-master, setup-slave, failover, rejoin). Pure.
 */
import type { Config } from '../core/config.js';
import type { Step } from '../core/plan.js';
import { RefusedError } from '../core/errors.js';
import { quoteIdent } from '../pg/conninfo.js';
import type { LondisteFacts, NodeState } from './facts.js';
import {
  aptInstallArgv,
  grantsSql,
  londisteArgv,
  londisteEnv,
  londisteNodeName,
  londistePaths,
  qualifiedTables,
  queueSettingsSql,
} from './names.js';

export interface RenderedLondiste {
  readonly pgqdIni: string;
  readonly workerIni: string;
}

/** A `londiste <ini> …` step as the PostgreSQL OS user. */
export function londisteStep(
  config: Config,
  id: string,
  title: string,
  args: readonly string[],
  done: string | undefined,
  timeoutMs = 120_000,
): Step {
  return {
    kind: 'run',
    id,
    title,
    argv: londisteArgv(config, ...args),
    user: config.postgres.osUser,
    env: londisteEnv(config),
    timeoutMs,
    done,
  };
}

/**
 * Refuses when packages are missing and installing them was not allowed.
 * @throws RefusedError naming the exact command to run.
 */
export function refuseMissingPackages(lf: LondisteFacts, installPackages: boolean): void {
  if (lf.missingPackages.length > 0 && !installPackages) {
    throw new RefusedError(
      `Londiste mode needs Debian packages that are not installed: ${lf.missingPackages.join(', ')}; nothing was changed`,
      '--install-packages',
      `or install them yourself: apt-get update && DEBIAN_FRONTEND=noninteractive ${aptInstallArgv(lf.missingPackages).join(' ')}`,
    );
  }
}

/** Refuses replicated tables that are missing or lack a primary key where the node's data is known. */
export function refuseBadTables(config: Config, state: NodeState, where: string): void {
  if (!state.reachable || state.chefTables.length === 0) {
    return;
  }
  const missing = state.chefTables.filter((t) => !t.exists).map((t) => t.name);
  if (missing.length > 0) {
    throw new RefusedError(
      `chefServer.tables names tables that do not exist in ${config.chefServer.database} on ${where}: ${missing.join(', ')}; nothing was changed`,
      undefined,
      `create them with the same definition as on the master (DDL is not replicated), or remove them from chefServer.tables`,
    );
  }
  const noPk = state.chefTables.filter((t) => !t.hasPrimaryKey).map((t) => t.name);
  if (noPk.length > 0) {
    throw new RefusedError(
      `Londiste replicates only tables with a primary key; on ${where} these have none: ${noPk.join(', ')}; nothing was changed`,
      undefined,
      `add a primary key (ALTER TABLE … ADD PRIMARY KEY, on both nodes), or remove the table from chefServer.tables`,
    );
  }
}

/** Packages, Debian's pgqd service, the londiste folder and the two ini files. */
export function planLondisteFilesSteps(
  config: Config,
  lf: LondisteFacts,
  rendered: RenderedLondiste,
): Step[] {
  const p = londistePaths(config);
  const steps: Step[] = [];
  steps.push({
    kind: 'run',
    id: 'install-londiste-packages',
    title: 'install Skytools 3 (pgqd, londiste, the pgq/pgq_node/londiste extensions) with apt',
    argv: aptInstallArgv(lf.missingPackages.length > 0 ? lf.missingPackages : ['pgqd']),
    env: { DEBIAN_FRONTEND: 'noninteractive' },
    timeoutMs: 900_000,
    done: lf.missingPackages.length === 0 ? 'every package is installed' : undefined,
  });
  steps.push({
    kind: 'run',
    id: 'disable-system-pgqd',
    title: "disable Debian's pgqd.service (it reads /etc/pgqd.ini and would tick the cluster a second time)",
    argv: ['systemctl', 'disable', '--now', 'pgqd.service'],
    timeoutMs: 60_000,
    done:
      lf.systemPgqd === 'enabled'
        ? undefined
        : lf.systemPgqd === 'no-systemctl'
          ? 'no systemd on this host'
          : config.londiste.disableSystemPgqd
            ? 'pgqd.service is neither enabled nor active'
            : 'londiste.disableSystemPgqd is false',
  });
  steps.push({
    kind: 'action',
    id: 'prepare-londiste-dir',
    title: `create ${p.dir} (ini files, logs and pid files of pgqd and the worker)`,
    action: 'londiste',
    args: { op: 'prepare-dirs' },
    done: lf.files.pgqdIni !== undefined && lf.files.workerIni !== undefined ? `${p.dir} exists` : undefined,
  });
  steps.push({
    kind: 'write',
    id: 'write-pgqd-ini',
    title: 'write the pgqd ini (one ticker for this cluster, database_list = the Chef database)',
    path: p.pgqdIni,
    content: rendered.pgqdIni,
    mode: 0o644,
    done: lf.files.pgqdIni === rendered.pgqdIni ? 'pgqd ini is current' : undefined,
  });
  steps.push({
    kind: 'write',
    id: 'write-londiste-ini',
    title: "write the worker's ini (db = this node's own database)",
    path: p.workerIni,
    content: rendered.workerIni,
    mode: 0o644,
    done: lf.files.workerIni === rendered.workerIni ? 'worker ini is current' : undefined,
  });
  return steps;
}

/** Whether the queue ticker settings on a root are the configured ones. */
export function queueSettingsCurrent(config: Config, state: NodeState): boolean {
  const q = state.queue;
  return (
    q !== undefined &&
    Math.round(q.maxLagMs) === config.londiste.tickerMaxLagMs &&
    Math.round(q.idlePeriodMs) === config.londiste.tickerIdlePeriodMs
  );
}

export function grantStep(config: Config, state: NodeState): Step {
  return {
    kind: 'sql',
    id: 'grant-londiste-roles',
    title: `grant ${config.replication.user} the pgq/londiste roles and SELECT on the tables; pgq_writer to ${config.chefServer.sqlUser}`,
    on: 'local',
    database: config.chefServer.database,
    text: grantsSql(config),
    done: state.grantsDone ? 'roles already granted' : undefined,
  };
}

export function queueSettingsStep(
  config: Config,
  state: NodeState | undefined,
  id = 'set-queue-ticker',
): Step {
  return {
    kind: 'sql',
    id,
    title: `queue ${config.londiste.queue}: ticker_max_lag ${config.londiste.tickerMaxLagMs} ms, ticker_idle_period ${config.londiste.tickerIdlePeriodMs} ms`,
    on: 'local',
    database: config.chefServer.database,
    text: queueSettingsSql(config),
    done: state && queueSettingsCurrent(config, state) ? 'queue settings are current' : undefined,
  };
}

export function daemonsStep(lf: LondisteFacts, member: boolean): Step {
  const d = lf.daemons;
  return {
    kind: 'action',
    id: 'start-londiste-daemons',
    title: 'run pgqd and the worker under the chef-ha supervisor (pid files, restarted when they die)',
    action: 'londiste',
    args: { op: 'daemons-start' },
    done:
      d.supervisorPid !== undefined && d.pgqdPid !== undefined && (!member || d.workerPid !== undefined)
        ? `supervisor ${d.supervisorPid}, pgqd ${d.pgqdPid}${d.workerPid ? `, worker ${d.workerPid}` : ''} running`
        : undefined,
  };
}

/** Tables not yet registered on the node. */
export function unregisteredTables(config: Config, state: NodeState): string[] {
  return qualifiedTables(config).filter((t) => !state.tables.some((x) => x.table === t && x.local));
}

export function addTablesStep(config: Config, state: NodeState, title: string): Step {
  const missing = unregisteredTables(config, state);
  return londisteStep(
    config,
    'add-tables',
    title,
    ['add-table', ...(missing.length > 0 ? missing : qualifiedTables(config))],
    missing.length === 0 ? 'every table is registered' : undefined,
  );
}

/** The cascade node name of this node. */
export function localNode(config: Config): string {
  return londisteNodeName(config.node.name);
}

/** The cascade node name of the peer. */
export function peerNode(config: Config): string {
  return londisteNodeName(config.peer.name);
}

/** TRUNCATE of the replicated tables (the slave's copy starts from empty tables). */
export function truncateSql(config: Config): string {
  return `TRUNCATE ${config.chefServer.tables.map((t) => `public.${quoteIdent(t)}`).join(', ')};`;
}

/** After a takeover: erchef's pool reconnects to the now-writable tables, then the search index is rebuilt. */
export function chefStepsAfterTakeover(config: Config): Step[] {
  return [
    {
      kind: 'run',
      id: 'restart-chef-services',
      title: 'restart erchef (its pool reconnects to the now-writable tables)',
      argv: [config.chefServer.ctl, 'restart', 'erchef'],
      timeoutMs: 120_000,
    },
    {
      kind: 'run',
      id: 'reindex',
      title: 'chef-server-ctl reindex',
      argv: [config.chefServer.ctl, 'reindex'],
      timeoutMs: config.chefServer.reindexTimeoutMs,
    },
  ];
}
