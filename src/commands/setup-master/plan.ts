/**
 * planSetupMaster: facts → the steps that make this node the primary of a chef-ha pair. Pure.
 */
import * as path from 'node:path';
import type { Config } from '../../core/config.js';
import type { PairFacts } from '../../core/facts.js';
import type { Plan, Step } from '../../core/plan.js';
import { RefusedError } from '../../core/errors.js';
import { statePaths } from '../../core/context.js';
import { createSlotSql } from '../../pg/queries.js';
import { featuresFor } from '../../pg/version.js';
import { quoteIdent, quoteLiteral } from '../../pg/conninfo.js';
import {
  parseConfLines,
  planChefServerRbStep,
  planConfigFileSteps,
  planRecipeSteps,
  refuseBrokenEnvironment,
  serviceStep,
  slotOf,
  needsRestart,
  type Rendered,
} from '../common.js';

export interface SetupMasterOptions {
  readonly force: boolean;
  /** Londiste mode: install missing Skytools packages with apt. */
  readonly installPackages?: boolean;
}

export interface SetupMasterInput {
  readonly facts: PairFacts;
  readonly config: Config;
  readonly options: SetupMasterOptions;
  readonly rendered: Rendered;
  /** The settings lines of chef-ha.conf (to decide restart versus reload). */
  readonly settingsLines: readonly string[];
  readonly backupDir: string;
  /** chef-server.rb as it will be before the rb step (a slave installs the master's first). */
  readonly currentChefServerRb?: string | undefined;
}

/** The value of synchronous_standby_names naming the slave. */
export function syncStandbyNamesFor(standbyName: string): string {
  return `FIRST 1 (${quoteIdent(slotOf(standbyName))})`;
}

/**
 * Plans setup-master.
 * @throws RefusedError when this node cannot safely become the master.
 */
export function planSetupMaster(input: SetupMasterInput): Plan {
  const { facts, config } = input;
  if (config.replication.mode !== 'streaming') {
    throw new Error(
      'internal: planSetupMaster plans streaming mode; londiste mode is planned in londiste.ts',
    );
  }
  const steps = planMasterBaseSteps(input);
  const local = facts.local;
  const server = local.pg.server;
  return finishStreamingPlan(input, steps, server);
}

/**
 * The steps every master needs whatever the replication mode: checks, recipe, chef-server.rb, managed
 * PostgreSQL files, start/restart/reload, the Chef data on the distribution cluster, reconfigure, the
 * replication secret and role.
 * @throws RefusedError when this node cannot safely become the master.
 */
export function planMasterBaseSteps(input: SetupMasterInput): Step[] {
  const { facts, config, rendered, backupDir } = input;
  const local = facts.local;
  refuseBrokenEnvironment(local, config);
  if (config.replication.synchronous && !featuresFor(config.postgres.version).alterSystem) {
    throw new RefusedError(
      `synchronous mode needs PostgreSQL 9.4 or later (ALTER SYSTEM); this node has ${config.postgres.version}; nothing was changed`,
      undefined,
      'set replication.synchronous to false, or upgrade PostgreSQL',
    );
  }
  const server = local.pg.server;
  if (server?.inRecovery) {
    throw new RefusedError(
      `${config.node.name} is a standby (its PostgreSQL is in recovery), so it cannot become the master; nothing was changed`,
      undefined,
      'run setup-master on the current primary, or use `chef-ha-ctl failover` / `switchover` to change roles',
    );
  }
  if (local.fenced && !input.options.force) {
    throw new RefusedError(
      `${config.node.name} was fenced at ${local.fenced.at} (${local.fenced.reason}); making it a master again could split the pair; nothing was changed`,
      '--force',
      'run `chef-ha-ctl rejoin` to make it the standby of the new primary',
    );
  }
  // In londiste mode both clusters are writable by design; londiste.ts checks the peer's cascade role.
  if (
    config.replication.mode === 'streaming' &&
    facts.peer.reachable &&
    facts.peer.server &&
    !facts.peer.server.inRecovery &&
    !input.options.force
  ) {
    throw new RefusedError(
      `the peer ${config.peer.name} answers as a writable primary; two masters would split the pair; nothing was changed`,
      '--force',
    );
  }

  const running = local.pg.running;
  const embeddedData = local.embedded.hasChefDatabase;
  const dbOnDistribution = local.pg.database !== undefined;
  const steps: Step[] = [];
  steps.push(...planRecipeSteps(local, config, rendered, backupDir));
  const rbStep = planChefServerRbStep(
    'currentChefServerRb' in input ? input.currentChefServerRb : local.files.chefServerRb,
    config,
  );
  steps.push(rbStep);
  steps.push(...planConfigFileSteps(local, config, rendered));
  const desired = parseConfLines(input.settingsLines);
  const restartFor = running ? needsRestart(local, desired) : [];
  steps.push(
    serviceStep(
      config,
      'start',
      'start-postgresql',
      `start PostgreSQL ${config.postgres.version}`,
      running ? 'PostgreSQL is running' : undefined,
    ),
  );
  const configChanged = steps.some(
    (s) => ['write-chef-ha-conf', 'write-pg-hba', 'include-chef-ha-conf'].includes(s.id) && !s.done,
  );
  steps.push(
    serviceStep(
      config,
      'restart',
      'restart-postgresql',
      `restart PostgreSQL for ${restartFor.join(', ') || 'new settings'}`,
      restartFor.length === 0 ? 'no setting needs a restart' : undefined,
    ),
  );
  steps.push(
    serviceStep(
      config,
      'reload',
      'reload-postgresql',
      'reload PostgreSQL (pg_hba.conf and settings)',
      running && configChanged && restartFor.length === 0
        ? undefined
        : running && restartFor.length > 0
          ? 'the restart reads them'
          : running
            ? 'nothing to reload'
            : 'the start reads them',
    ),
  );
  steps.push({
    kind: 'action',
    id: 'migrate-embedded-data',
    title: 'copy opscode_chef from the embedded PostgreSQL to the distribution cluster',
    action: 'copy-database',
    args: {
      direction: 'embedded-to-distribution',
      dumpFile: path.join(backupDir, 'embedded-opscode_chef.dump'),
    },
    done: dbOnDistribution
      ? `${config.chefServer.database} is already on the distribution cluster`
      : embeddedData
        ? undefined
        : 'the embedded PostgreSQL holds no Chef data (the recipe creates the database)',
  });
  const nothingChefChanged = steps.every(
    (s) =>
      s.done !== undefined ||
      !['install-recipe-override', 'write-chef-server-rb', 'migrate-embedded-data'].includes(s.id),
  );
  steps.push({
    kind: 'run',
    id: 'reconfigure',
    title: 'chef-server-ctl reconfigure (runs the override recipe)',
    argv: [config.chefServer.ctl, 'reconfigure'],
    timeoutMs: 900_000,
    done:
      nothingChefChanged && dbOnDistribution && !local.embedded.running
        ? 'recipe and attributes unchanged since the last reconfigure'
        : undefined,
  });
  steps.push({
    kind: 'action',
    id: 'create-replication-secret',
    title: 'generate the replication password',
    action: 'ensure-secret',
    args: { name: 'replication' },
    done: local.secretPresent ? 'the secret exists' : undefined,
  });
  steps.push({
    kind: 'action',
    id: 'create-replication-role',
    title: `create role ${config.replication.user} (replication, monitoring, fencing)`,
    action: 'replication-role',
    args: { exists: local.pg.replicationRoleExists },
    done: local.pg.replicationRoleExists && local.secretPresent ? 'the role exists' : undefined,
  });
  return steps;
}

function finishStreamingPlan(
  input: SetupMasterInput,
  steps: Step[],
  server: PairFacts['local']['pg']['server'],
): Plan {
  const { facts, config, backupDir } = input;
  const local = facts.local;
  const slot = slotOf(config.peer.name);
  const features = featuresFor(config.postgres.version);
  steps.push({
    kind: 'sql',
    id: 'create-replication-slot',
    title: `create replication slot ${slot} for ${config.peer.name}`,
    on: 'local',
    database: 'postgres',
    text: createSlotSql(quoteLiteral(slot)),
    done: !features.replicationSlots
      ? `PostgreSQL ${config.postgres.version} has no replication slots (wal_keep_segments keeps WAL instead)`
      : local.pg.slots.some((s) => s.slot_name === slot)
        ? 'the slot exists'
        : undefined,
  });
  if (config.replication.synchronous) {
    const streaming =
      server?.replication.some((r) => r.application_name === slot && r.state === 'streaming') ?? false;
    const want = syncStandbyNamesFor(config.peer.name);
    steps.push({
      kind: 'sql',
      id: 'enable-synchronous',
      title: `make ${config.peer.name} the synchronous standby`,
      on: 'local',
      database: 'postgres',
      text: `ALTER SYSTEM SET synchronous_standby_names = ${quoteLiteral(want)};\nSELECT pg_reload_conf();`,
      done:
        server?.synchronousStandbyNames === want
          ? 'synchronous_standby_names already names the slave'
          : streaming
            ? undefined
            : 'the slave is not streaming yet: setup-slave switches synchronous mode on once it streams (writes would hang until then)',
    });
  }
  const bundle = statePaths(config).bundle;
  steps.push({
    kind: 'action',
    id: 'write-join-bundle',
    title: `write the join bundle for ${config.peer.name}`,
    action: 'write-bundle',
    args: { output: bundle, slotName: slot },
    done: undefined,
  });
  const changed = steps.filter((s) => !s.done).length;
  return {
    command: 'setup-master',
    summary:
      changed <= 1
        ? `${config.node.name} is already set up as master; refreshing the join bundle`
        : `make ${config.node.name} the ${config.replication.synchronous ? 'synchronous ' : ''}streaming master for ${config.peer.name} (${changed} steps to do)`,
    steps,
    backupDir,
  };
}
