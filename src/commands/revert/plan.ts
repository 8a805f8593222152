/**
 * planRevert: put chef-server back on its embedded PostgreSQL as the package ships it. The original
 * recipe returns, chef-ha's blocks and settings go, and on a primary the Chef data written since
 * setup is copied back into the embedded cluster (both copies are dumped to the backup folder first).
 * Pure.
 */
import * as path from 'node:path';
import type { Config } from '../../core/config.js';
import type { LocalFacts } from '../../core/facts.js';
import type { Plan, Step } from '../../core/plan.js';
import { RefusedError } from '../../core/errors.js';
import { statePaths } from '../../core/context.js';
import { RB_BEGIN, RB_END, removeMarkedBlock } from '../../chef/chef-server-rb.js';
import {
  chefHaConfPath,
  chefServerRbPath,
  pgHbaPath,
  postgresqlConfPath,
  recipePath,
} from '../../chef/paths.js';
import { quoteLiteral } from '../../pg/conninfo.js';
import { HBA_BEGIN, HBA_END, INCLUDE_LINE, serviceStep, slotOf } from '../common.js';

export interface RevertInput {
  readonly local: LocalFacts;
  readonly config: Config;
  /** sha256 of `<recipe>.chef-ha-original`, undefined when that file is missing. */
  readonly keptOriginalSha256: string | undefined;
  readonly backupDir: string;
}

function embeddedCtl(config: Config, verb: 'start' | 'stop'): Step {
  const e = config.chefServer.embeddedPostgres;
  const argv: [string, ...string[]] =
    verb === 'start'
      ? [
          `${e.bindir}/pg_ctl`,
          '-D',
          e.dataDir,
          '-l',
          path.join(path.dirname(e.dataDir), 'chef-ha-revert.log'),
          '-w',
          '-t',
          '60',
          'start',
        ]
      : [`${e.bindir}/pg_ctl`, '-D', e.dataDir, '-m', 'fast', '-w', '-t', '60', 'stop'];
  return {
    kind: 'run',
    id: `${verb}-embedded-postgresql`,
    title:
      verb === 'start'
        ? 'start the embedded PostgreSQL to copy the Chef data back'
        : 'stop the embedded PostgreSQL again (its runit service starts it at reconfigure)',
    argv,
    user: e.osUser,
    timeoutMs: 90_000,
  };
}

/**
 * Plans revert.
 * @throws RefusedError on a standby, or when the original recipe cannot be found.
 */
export function planRevert(input: RevertInput): Plan {
  const { local, config, backupDir } = input;
  const recipe = recipePath(config);
  const server = local.pg.server;
  if (server?.inRecovery) {
    throw new RefusedError(
      `${config.node.name} is a standby: reverting it would leave chef-server on the stale copy it had before setup-slave; nothing was changed`,
      undefined,
      'revert the master (the primary) instead; to retire this standby, stop its PostgreSQL and run revert with the pair dissolved',
    );
  }
  if (local.recipe.kind === 'override') {
    if (input.keptOriginalSha256 === undefined) {
      throw new RefusedError(
        `the original recipe kept at ${recipe}.chef-ha-original is missing, so it cannot be put back; nothing was changed`,
        undefined,
        'reinstall the chef-server package (it brings the original recipe), then run `chef-ha-ctl revert` again',
      );
    }
    if (local.recordedOriginalSha256 && input.keptOriginalSha256 !== local.recordedOriginalSha256) {
      throw new RefusedError(
        `${recipe}.chef-ha-original does not match the sha256 recorded when the override was installed (${local.recordedOriginalSha256}); nothing was changed`,
        undefined,
        'reinstall the chef-server package to get the original recipe back',
      );
    }
  }
  const onDistribution = local.pg.running && local.pg.database !== undefined;
  const steps: Step[] = [];
  // Only while chef-server runs on the distribution cluster (override installed) is its data there the
  // current one; after a revert, copying it again would overwrite newer data in the embedded cluster.
  const copyBack = local.recipe.kind === 'override' && onDistribution && server?.inRecovery === false;
  steps.push({
    ...embeddedCtl(config, 'start'),
    done: !copyBack
      ? 'no Chef data to copy back'
      : local.embedded.running
        ? 'the embedded PostgreSQL is running'
        : undefined,
  });
  steps.push({
    kind: 'action',
    id: 'copy-data-back',
    title: 'copy opscode_chef from the distribution cluster back into the embedded one (both dumped first)',
    action: 'copy-database',
    args: {
      direction: 'distribution-to-embedded',
      dumpFile: path.join(backupDir, 'distribution-opscode_chef.dump'),
      replace: true,
      replacedDumpFile: path.join(backupDir, 'embedded-opscode_chef-before-revert.dump'),
    },
    done: copyBack ? undefined : 'chef-server does not run on the distribution cluster',
  });
  steps.push({
    ...embeddedCtl(config, 'stop'),
    done:
      copyBack && !local.embedded.running
        ? undefined
        : local.embedded.running
          ? 'it was running before'
          : 'not started',
  });
  steps.push({
    kind: 'backup',
    id: 'restore-original-recipe',
    title: 'put the original postgresql.rb back',
    method: 'copy',
    from: `${recipe}.chef-ha-original`,
    to: recipe,
    done: local.recipe.kind === 'override' ? undefined : 'the installed recipe is not the override',
  });
  const rb = local.files.chefServerRb;
  const rbWithout = rb === undefined ? undefined : removeMarkedBlock(rb, RB_BEGIN, RB_END);
  steps.push({
    kind: 'write',
    id: 'remove-chef-server-rb-block',
    title: "remove chef-ha's block from chef-server.rb",
    path: chefServerRbPath(config),
    content: rbWithout ?? '',
    mode: 0o644,
    done: rb === undefined || rbWithout === rb ? 'no chef-ha block' : undefined,
  });
  const slot = slotOf(config.peer.name);
  steps.push({
    kind: 'sql',
    id: 'drop-replication-slot',
    title: `drop replication slot ${slot} (a slot nobody reads keeps WAL forever)`,
    on: 'local',
    database: 'postgres',
    text: `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = ${quoteLiteral(slot)};`,
    done: local.pg.slots.some((s) => s.slot_name === slot) ? undefined : 'no slot',
  });
  steps.push({
    kind: 'remove',
    id: 'remove-chef-ha-conf',
    title: 'remove conf.d/chef-ha.conf',
    path: chefHaConfPath(config),
    done: local.files.chefHaConf === undefined ? 'not present' : undefined,
  });
  const hba = local.files.pgHba;
  const hbaWithout = hba === undefined ? undefined : removeMarkedBlock(hba, HBA_BEGIN, HBA_END);
  steps.push({
    kind: 'write',
    id: 'remove-pg-hba-block',
    title: "remove chef-ha's block from pg_hba.conf",
    path: pgHbaPath(config),
    content: hbaWithout ?? '',
    mode: 0o640,
    owner: config.postgres.osUser,
    done: hba === undefined || hbaWithout === hba ? 'no chef-ha block' : undefined,
  });
  const conf = local.files.postgresqlConf;
  const confWithout = conf
    ?.split('\n')
    .filter((l) => l !== INCLUDE_LINE)
    .join('\n');
  steps.push({
    kind: 'write',
    id: 'remove-include-line',
    title: "remove chef-ha's include line from postgresql.conf",
    path: postgresqlConfPath(config),
    content: confWithout ?? '',
    mode: 0o644,
    owner: config.postgres.osUser,
    done: conf === undefined || confWithout === conf ? 'no chef-ha include line' : undefined,
  });
  const changedPg = steps.some(
    (s) => !s.done && ['remove-chef-ha-conf', 'remove-pg-hba-block', 'remove-include-line'].includes(s.id),
  );
  steps.push(
    serviceStep(
      config,
      'restart',
      'restart-postgresql',
      'restart the distribution PostgreSQL without chef-ha settings',
      local.pg.running && changedPg ? undefined : 'nothing to apply',
    ),
  );
  steps.push({
    kind: 'remove',
    id: 'forget-original-record',
    title: 'forget the recorded original recipe (chef-ha is no longer set up)',
    path: statePaths(config).recipeRecord,
    done: local.recordedOriginalSha256 === undefined ? 'nothing recorded' : undefined,
  });
  const anything = steps.some((s) => !s.done);
  steps.push({
    kind: 'run',
    id: 'reconfigure',
    title: 'chef-server-ctl reconfigure (the original recipe brings the embedded PostgreSQL back)',
    argv: [config.chefServer.ctl, 'reconfigure'],
    timeoutMs: 900_000,
    done: anything ? undefined : 'nothing was reverted',
  });
  return {
    command: 'revert',
    summary: anything
      ? `put chef-server on ${config.node.name} back on its embedded PostgreSQL and remove chef-ha's settings`
      : `${config.node.name} has nothing of chef-ha to revert`,
    steps,
    backupDir,
  };
}
