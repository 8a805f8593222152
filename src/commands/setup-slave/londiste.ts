/**
 * planSetupSlaveLondiste: the slave of a Londiste pair is a **branch** of the master's root (only a
 * branch can be taken over when the master dies). Keys as in streaming mode, the slave's own Chef data
 * moved to the distribution cluster (its cookbooks, roles and data bags stay), then Skytools: a pg_dump
 * of the replicated tables under the backup folder, the tables emptied, create-branch with --provider,
 * the supervised daemons, add-table, a wait until every table is `ok`, and reindex. Pure.
 */
import * as path from 'node:path';
import type { Plan, Step } from '../../core/plan.js';
import { RefusedError } from '../../core/errors.js';
import type { BundleManifest } from '../../chef/bundle.js';
import type { LondisteFacts } from '../../londiste/facts.js';
import { locationConnstr, qualifiedTables } from '../../londiste/names.js';
import {
  addTablesStep,
  daemonsStep,
  grantStep,
  localNode,
  londisteStep,
  planLondisteFilesSteps,
  refuseBadTables,
  refuseMissingPackages,
  truncateSql,
  type RenderedLondiste,
} from '../../londiste/plan.js';
import { planMasterBaseSteps, type SetupMasterInput } from '../setup-master/plan.js';
import { planBundleSteps } from './plan.js';

export interface SetupSlaveLondisteInput extends SetupMasterInput {
  readonly londiste: LondisteFacts;
  readonly renderedLondiste: RenderedLondiste;
  readonly installPackages: boolean;
  readonly manifest: BundleManifest;
  readonly bundleDir: string;
  readonly bundleChefServerRb: string | undefined;
  readonly etcMatches: boolean;
  readonly secretMatches: boolean;
  readonly passfileCurrent: boolean;
}

/**
 * Plans setup-slave in londiste mode.
 * @throws RefusedError when the master is not a usable root, this node is a root, or input is bad.
 */
export function planSetupSlaveLondiste(input: SetupSlaveLondisteInput): Plan {
  const { config, londiste: lf, manifest, backupDir, facts } = input;
  const master = manifest.master;
  refuseMissingPackages(lf, input.installPackages);
  if (!lf.peer.reachable) {
    throw new RefusedError(
      `cannot reach the Chef database on the master ${master.name} (${config.peer.address}:${config.peer.postgresPort}) as ${config.replication.user}: ${lf.peer.error ?? 'no answer'}; nothing was changed`,
      undefined,
      `check that setup-master ran on ${master.name}, that its pg_hba block admits ${config.node.address}, and that peer.address/peer.postgresPort point at it`,
    );
  }
  if (lf.peer.nodeType !== 'root') {
    throw new RefusedError(
      `${master.name} is not the root of Londiste queue "${config.londiste.queue}"${lf.peer.nodeType ? ` (it is a ${lf.peer.nodeType})` : lf.peer.extensions ? ' (no node of that queue there)' : ' (Londiste is not installed there)'}; nothing was changed`,
      undefined,
      `londiste.queue must be the same on both nodes; run \`chef-ha-ctl setup-master\` on ${master.name} first`,
    );
  }
  const localId = facts.local.pg.server?.systemIdentifier;
  const peerId = facts.peer.server?.systemIdentifier;
  if (localId && peerId && localId === peerId) {
    throw new RefusedError(
      `this node's PostgreSQL (${config.postgres.socketDir}, port ${config.postgres.port}) is the master's own cluster (system id ${localId}): the slave's worker must write to the slave's database, never the provider's; nothing was changed`,
      undefined,
      'fix postgres.socketDir/postgres.port (this node) or peer.address/peer.postgresPort (the master) in the config',
    );
  }
  const local = lf.local;
  if (local.nodeType === 'root') {
    throw new RefusedError(
      `${config.node.name} is itself the root of queue ${config.londiste.queue}; making it a branch would drop the pair's master; nothing was changed`,
      undefined,
      'run `chef-ha-ctl status`; use `chef-ha-ctl rejoin` on an old master',
    );
  }
  refuseBadTables(config, lf.peer, master.name);
  refuseBadTables(config, local, config.node.name);
  const isBranch = local.nodeType === 'branch';
  const allOk =
    isBranch &&
    qualifiedTables(config).every((t) => local.tables.some((x) => x.table === t && x.state === 'ok'));

  const steps: Step[] = planBundleSteps(
    input,
    `write the passfile pgqd and londiste use to reach both nodes as ${config.replication.user}`,
  );
  const base = planMasterBaseSteps({
    ...input,
    currentChefServerRb: input.etcMatches ? facts.local.files.chefServerRb : input.bundleChefServerRb,
    options: { ...input.options, force: true },
  }).map((s) =>
    // New keys need a reconfigure even when recipe and attributes are unchanged.
    s.id === 'reconfigure' && !input.etcMatches ? { ...s, done: undefined } : s,
  );
  steps.push(...base);
  steps.push(...planLondisteFilesSteps(config, lf, input.renderedLondiste));
  const dump = path.join(backupDir, 'replicated-tables.dump');
  steps.push({
    kind: 'action',
    id: 'backup-replicated-tables',
    title: `pg_dump ${config.chefServer.tables.join(', ')} before they are emptied`,
    action: 'londiste',
    args: { op: 'dump-tables', file: dump },
    done: isBranch ? `already a branch of ${master.name} (the tables hold its rows)` : undefined,
  });
  steps.push({
    kind: 'sql',
    id: 'empty-replicated-tables',
    title: `empty ${config.chefServer.tables.join(', ')} (the master's rows are copied in next); other tables are untouched`,
    on: 'local',
    database: config.chefServer.database,
    text: truncateSql(config),
    done: isBranch ? `already a branch of ${master.name}` : undefined,
  });
  steps.push(
    londisteStep(
      config,
      'create-branch',
      `create-branch ${localNode(config)} with provider ${master.name}`,
      [
        'create-branch',
        localNode(config),
        locationConnstr(config, 'node'),
        `--provider=${locationConnstr(config, 'peer')}`,
      ],
      isBranch ? `${localNode(config)} is a branch (provider ${local.provider ?? '?'})` : undefined,
    ),
  );
  steps.push(grantStep(config, local));
  // add-table before the worker starts: add-table registers (and commits) one table at a time, and a
  // running worker that sees the first one launches its copy and then sleeps 3 s before it looks again,
  // so the copies ran one after the other despite parallel_copies. A worker started afterwards finds
  // every table missing and launches parallel_copies copies in one pass.
  steps.push(
    addTablesStep(
      config,
      local,
      `add-table on the branch (the worker copies ${config.londiste.parallelCopies} at once when it starts)`,
    ),
  );
  steps.push(daemonsStep(lf, true));
  steps.push({
    kind: 'action',
    id: 'wait-tables-ok',
    title: 'wait until every table is copied and in sync (state ok)',
    action: 'londiste',
    args: { op: 'wait-sync' },
    done: allOk ? 'every table is ok' : undefined,
  });
  const changed = steps.filter((s) => !s.done).length;
  steps.push({
    kind: 'run',
    id: 'reindex',
    title: 'chef-server-ctl reindex (search index from the replicated data)',
    argv: [config.chefServer.ctl, 'reindex'],
    timeoutMs: config.chefServer.reindexTimeoutMs,
    done: changed === 0 ? 'nothing changed since the last reindex' : undefined,
  });
  return {
    command: 'setup-slave',
    summary:
      changed === 0
        ? `${config.node.name} is already a Londiste branch of ${master.name} with every table ok`
        : `make ${config.node.name} a Londiste branch of ${master.name} (queue ${config.londiste.queue}, tables ${config.chefServer.tables.join(', ')}; ${changed} steps to do)`,
    steps,
    backupDir,
  };
}
