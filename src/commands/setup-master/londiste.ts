/**
 * planSetupMasterLondiste: the master of a Londiste pair is the cascade's root. The common master steps
 * (recipe, PostgreSQL files, Chef data, reconfigure, replication secret and role), then Skytools:
 * packages, pgqd per cluster, create-root, grants, tuned queue ticking, the supervised daemons, add-table
 * for every table in chefServer.tables, and the join bundle. Pure.
 */
import type { Plan, Step } from '../../core/plan.js';
import { SECRET_TOKEN } from '../../core/plan.js';
import { RefusedError } from '../../core/errors.js';
import { statePaths } from '../../core/context.js';
import type { LondisteFacts } from '../../londiste/facts.js';
import { locationConnstr } from '../../londiste/names.js';
import {
  addTablesStep,
  daemonsStep,
  grantStep,
  localNode,
  londisteStep,
  planLondisteFilesSteps,
  queueSettingsStep,
  refuseBadTables,
  refuseMissingPackages,
  type RenderedLondiste,
} from '../../londiste/plan.js';
import { slotOf } from '../common.js';
import { planMasterBaseSteps, type SetupMasterInput } from './plan.js';

export interface SetupMasterLondisteInput extends SetupMasterInput {
  readonly londiste: LondisteFacts;
  readonly renderedLondiste: RenderedLondiste;
  readonly installPackages: boolean;
  /** The passfile already holds the replication secret. */
  readonly passfileCurrent: boolean;
}

/**
 * Plans setup-master in londiste mode.
 * @throws RefusedError when this node cannot become the root, or packages are missing.
 */
export function planSetupMasterLondiste(input: SetupMasterLondisteInput): Plan {
  const { config, londiste: lf } = input;
  refuseMissingPackages(lf, input.installPackages);
  const local = lf.local;
  if (local.nodeType !== undefined && local.nodeType !== 'root') {
    throw new RefusedError(
      `${config.node.name} is a Londiste ${local.nodeType} of queue ${config.londiste.queue} (provider ${local.provider ?? '?'}), not its root; nothing was changed`,
      undefined,
      'run setup-master on the root, or `chef-ha-ctl switchover` to change roles',
    );
  }
  if (lf.peer.nodeType === 'root' && !input.options.force) {
    throw new RefusedError(
      `the peer ${config.peer.name} is already the root of queue ${config.londiste.queue}; two roots would split the pair; nothing was changed`,
      '--force',
      'run `chef-ha-ctl status` to see which node is the master',
    );
  }
  refuseBadTables(config, local, config.node.name);
  const steps: Step[] = planMasterBaseSteps(input);
  steps.push({
    kind: 'write',
    id: 'write-passfile',
    title: 'write the passfile pgqd and londiste use to reach both nodes as the replication role',
    path: config.postgres.passfile,
    content: `*:*:*:${config.replication.user}:${SECRET_TOKEN}\n`,
    secret: 'replication',
    mode: 0o600,
    owner: config.postgres.osUser,
    done: input.passfileCurrent ? 'passfile is current' : undefined,
  });
  steps.push(...planLondisteFilesSteps(config, lf, input.renderedLondiste));
  steps.push(
    londisteStep(
      config,
      'create-root',
      `create-root ${localNode(config)} (installs pgq, pgq_node, londiste; creates queue ${config.londiste.queue})`,
      ['create-root', localNode(config), locationConnstr(config, 'node')],
      local.nodeType === 'root' ? `${localNode(config)} is the root of ${config.londiste.queue}` : undefined,
    ),
  );
  steps.push(grantStep(config, local));
  steps.push(queueSettingsStep(config, local.nodeType === 'root' ? local : undefined));
  steps.push(daemonsStep(lf, true));
  steps.push(
    addTablesStep(
      config,
      local,
      `add-table on the root (installs the triggers): ${config.chefServer.tables.join(', ')}`,
    ),
  );
  const bundle = statePaths(config).bundle;
  steps.push({
    kind: 'action',
    id: 'write-join-bundle',
    title: `write the join bundle for ${config.peer.name}`,
    action: 'write-bundle',
    args: { output: bundle, slotName: slotOf(config.peer.name) },
    done: undefined,
  });
  const changed = steps.filter((s) => !s.done).length;
  return {
    command: 'setup-master',
    summary:
      changed <= 1
        ? `${config.node.name} is already set up as Londiste root; refreshing the join bundle`
        : `make ${config.node.name} the Londiste root of queue ${config.londiste.queue} for ${config.peer.name} (${changed} steps to do)`,
    steps,
    backupDir: input.backupDir,
  };
}
