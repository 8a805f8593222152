/**
 * planSetupSlave: facts and a verified join bundle → the steps that make this node the streaming
 * standby of the master. Pure.
 */
import * as path from 'node:path';
import type { Config } from '../../core/config.js';
import type { PairFacts } from '../../core/facts.js';
import type { Plan, Step } from '../../core/plan.js';
import { SECRET_TOKEN } from '../../core/plan.js';
import { RefusedError } from '../../core/errors.js';
import { stagingDataDir, statePaths } from '../../core/context.js';
import type { BundleManifest } from '../../chef/bundle.js';
import { chefServerRbPath } from '../../chef/paths.js';
import { formatBytes } from '../../pg/lsn.js';
import { renderBasebackupArgv } from '../../pg/version.js';
import {
  chefObjects,
  desiredChefServerRb,
  planConfigFileSteps,
  planRecipeSteps,
  refuseBrokenEnvironment,
  serviceStep,
  slotOf,
  type Rendered,
} from '../common.js';
import { planSynchronousStandbySteps } from '../sync-steps.js';

export interface SetupSlaveOptions {
  readonly force: boolean;
  /**
   * Wait for `chef-server-ctl reindex` to end. Without it the reindex runs in the background: the
   * standby already streams, and on a large Chef Server the Solr reindex takes longer than the copy.
   */
  readonly waitReindex: boolean;
}

export interface SetupSlaveInput {
  readonly facts: PairFacts;
  readonly config: Config;
  readonly options: SetupSlaveOptions;
  readonly rendered: Rendered & { readonly standbyFile: { readonly name: string; readonly content: string } };
  readonly manifest: BundleManifest;
  /** Folder the bundle was extracted to. */
  readonly bundleDir: string;
  /** chef-server.rb as the master has it (from the bundle), if any. */
  readonly bundleChefServerRb: string | undefined;
  /** Keys and secrets in /etc/chef-server already equal the bundle's. */
  readonly etcMatches: boolean;
  /** The stored replication secret equals the bundle's. */
  readonly secretMatches: boolean;
  /** The passfile holds the current secret. */
  readonly passfileCurrent: boolean;
  /** Bytes the base backup will need (the master's cluster size). */
  readonly neededBytes: number;
  readonly backupDir: string;
}

/** Settings a base backup or rewind copies from the master that must not stay on a standby. */
export const HOST_SPECIFIC_AUTO_CONF = [
  'synchronous_standby_names',
  'primary_conninfo',
  'primary_slot_name',
  'default_transaction_read_only',
] as const;

/**
 * Plans setup-slave.
 * @throws RefusedError when this node's data must not be replaced, or the master cannot be used.
 */
export function planSetupSlave(input: SetupSlaveInput): Plan {
  const { facts, config, manifest, rendered, backupDir } = input;
  const local = facts.local;
  refuseBrokenEnvironment(local, config);
  const master = manifest.master;
  const server = local.pg.server;
  // A writable node that a standby streams from is the pair's primary: replacing its data loses writes.
  const streamsFromHere = server?.replication.some((r) => r.state === 'streaming') ?? false;
  if (server && !server.inRecovery && !server.readOnlyDefault && streamsFromHere && !input.options.force) {
    throw new RefusedError(
      `${config.node.name} is the pair's current primary (its PostgreSQL is writable and ${server.replication.map((r) => r.application_name).join(', ')} streams from it); replacing its data would lose the pair's writes; nothing was changed`,
      '--force',
      'use `chef-ha-ctl switchover` to swap roles safely',
    );
  }
  if (!facts.peer.reachable || !facts.peer.server) {
    throw new RefusedError(
      `cannot reach the master's PostgreSQL at ${config.peer.address}:${config.peer.postgresPort} as ${config.replication.user}: ${facts.peer.error ?? 'no answer'}; nothing was changed`,
      undefined,
      `check that setup-master ran on ${master.name}, that its pg_hba block admits ${config.node.address}, and that peer.address/peer.postgresPort point at it`,
    );
  }
  if (facts.peer.server.inRecovery) {
    throw new RefusedError(
      `${master.name} is itself a standby (in recovery); a slave must follow the primary; nothing was changed`,
      undefined,
      `run \`chef-ha-ctl status\` to see which node is the primary`,
    );
  }
  const peerId = facts.peer.server.systemIdentifier;
  const bundleId = manifest.postgres.systemIdentifier;
  if (peerId !== null && bundleId && peerId !== bundleId) {
    throw new RefusedError(
      `the bundle was made on a different cluster (system id ${bundleId}) than the one answering at ${config.peer.address}:${config.peer.postgresPort} (${peerId}); nothing was changed`,
      undefined,
      `export a fresh bundle on ${master.name}: chef-ha-ctl export-bundle --output FILE`,
    );
  }
  const alreadyStandby =
    server?.inRecovery === true &&
    (server.systemIdentifier === null || server.systemIdentifier === bundleId) &&
    local.basebackupPhase === undefined;
  if (server && !server.inRecovery && !input.options.force) {
    const perTable: Record<string, number> = {};
    for (const data of [local.embedded.chefData, local.pg.chefData]) {
      for (const [table, n] of Object.entries(data)) {
        perTable[table] = (perTable[table] ?? 0) + n;
      }
    }
    if (chefObjects(perTable) > 0) {
      const detail = Object.entries(perTable)
        .filter(([, n]) => n > 0)
        .map(([t, n]) => `${t}: ${n}`)
        .join(', ');
      throw new RefusedError(
        `${config.node.name} holds Chef data beyond a fresh install's bootstrap rows (${detail}); setup-slave replaces it with ${master.name}'s; nothing was changed`,
        '--force',
        `re-run with --force to accept replacing it: the distribution cluster's data directory is moved into ${backupDir} first, and the embedded cluster's data is left where it is`,
      );
    }
  }
  if (!alreadyStandby && local.freeBytes < input.neededBytes) {
    throw new RefusedError(
      `not enough free disk for the base backup: ${formatBytes(local.freeBytes)} free where ${config.postgres.dataDir} lives, ${formatBytes(input.neededBytes)} needed (the master's cluster plus 10%, plus minFreeDiskBytes); nothing was changed`,
      undefined,
      'free space on that filesystem (old backups are under the state directory) and run setup-slave again',
    );
  }

  const steps: Step[] = [];
  const secrets = statePaths(config).secrets;
  steps.push({
    kind: 'action',
    id: 'store-replication-secret',
    title: 'store the replication password from the bundle (mode 0600)',
    action: 'import-secret',
    args: { from: path.join(input.bundleDir, 'secret', 'replication.password') },
    done: input.secretMatches ? `already in ${secrets}` : undefined,
  });
  steps.push({
    kind: 'write',
    id: 'write-passfile',
    title: `write the passfile PostgreSQL uses to reach ${master.name}`,
    path: config.postgres.passfile,
    content: `*:*:*:${config.replication.user}:${SECRET_TOKEN}\n`,
    secret: 'replication',
    mode: 0o600,
    owner: config.postgres.osUser,
    done: input.passfileCurrent && input.secretMatches ? 'passfile is current' : undefined,
  });
  steps.push({
    kind: 'backup',
    id: 'backup-etc-chef-server',
    title: `back up ${config.chefServer.etcDir}`,
    method: 'copy',
    from: config.chefServer.etcDir,
    to: path.join(backupDir, 'etc-chef-server'),
    done: input.etcMatches ? `keys already equal ${master.name}'s` : undefined,
  });
  steps.push({
    kind: 'action',
    id: 'install-etc-chef-server',
    title: `replace ${config.chefServer.etcDir} with ${master.name}'s (modes and owners kept)`,
    action: 'install-etc-chef-server',
    args: { from: input.bundleDir, entries: manifest.etc },
    done: input.etcMatches ? `keys already equal ${master.name}'s` : undefined,
  });
  const currentRb = input.etcMatches ? local.files.chefServerRb : input.bundleChefServerRb;
  const rb = desiredChefServerRb(currentRb, config);
  steps.push({
    kind: 'write',
    id: 'write-chef-server-rb',
    title: 'point chef-server at this node’s distribution PostgreSQL (marked block in chef-server.rb)',
    path: chefServerRbPath(config),
    content: rb,
    mode: 0o644,
    done: input.etcMatches && rb === local.files.chefServerRb ? 'chef-server.rb block is current' : undefined,
  });
  steps.push(...planRecipeSteps(local, config, rendered, backupDir));
  const running = local.pg.running;
  const phase = local.basebackupPhase;
  const staging = stagingDataDir(config);
  const swapping = phase === 'swap';
  // An interrupted run that got as far as exchanging the data directories left a complete copy, either
  // still in the staging directory or already in place; otherwise the copy is (re)made.
  const copyReady = swapping && local.stagingExists;
  const copyInPlace = swapping && !local.stagingExists && local.dataDir.exists;
  const needCopy = !alreadyStandby && !copyReady && !copyInPlace;
  const chefChanged = steps.some(
    (s) =>
      !s.done &&
      ['install-etc-chef-server', 'write-chef-server-rb', 'install-recipe-override'].includes(s.id),
  );
  // Once the exchange began, the old cluster is gone and the copy must not start before it is a
  // standby: a reconfigure still needed then runs once the standby streams.
  const reconfigureLate = swapping && chefChanged;
  const startForReconfigure = !running && !alreadyStandby && !swapping;
  const baseDone = alreadyStandby ? `already a standby of ${master.name}'s cluster` : undefined;
  const marker = statePaths(config).basebackupMarker;
  steps.push(
    serviceStep(
      config,
      'start',
      'start-postgresql-for-reconfigure',
      'start PostgreSQL so that reconfigure can run',
      running || alreadyStandby
        ? 'PostgreSQL is running'
        : swapping
          ? 'an interrupted run already reconfigured and replaced the data directory'
          : undefined,
    ),
  );
  steps.push({
    kind: 'remove',
    id: 'remove-stale-copy',
    title: 'remove the unfinished copy an interrupted run left',
    path: staging,
    done: local.stagingExists && !copyReady ? undefined : 'no unfinished copy',
  });
  steps.push({
    kind: 'action',
    id: 'mark-basebackup-started',
    title: 'note that a base backup is in progress (so an interrupted one is recognised)',
    action: 'record-state',
    args: { path: marker, data: { phase: 'copy', master: master.name, startedBy: 'setup-slave' } },
    done: needCopy ? undefined : (baseDone ?? 'the interrupted run finished the copy'),
  });
  // The copy goes beside the data directory while the old cluster still runs, so reconfigure (which
  // needs a running cluster) and the copy run at the same time.
  const reconfigure: Step = {
    kind: 'run',
    id: 'reconfigure',
    title: "chef-server-ctl reconfigure (erchef gets the master's SQL password)",
    argv: [config.chefServer.ctl, 'reconfigure'],
    timeoutMs: 900_000,
    done:
      !chefChanged && (alreadyStandby || swapping)
        ? 'keys, recipe and attributes unchanged'
        : reconfigureLate
          ? 'runs once the standby streams (an interrupted run already replaced the data directory)'
          : undefined,
  };
  steps.push({ ...reconfigure, concurrent: 'copy' });
  steps.push({
    kind: 'run',
    id: 'pg-basebackup',
    title: `copy ${master.name}'s cluster with pg_basebackup (fast checkpoint, WAL streamed, slot ${slotOf(config.node.name)}) into ${staging}`,
    argv: renderBasebackupArgv(config.postgres.version, config.postgres.bindir, {
      host: config.peer.address,
      port: config.peer.postgresPort,
      user: config.replication.user,
      dataDir: staging,
      slotName: slotOf(config.node.name),
    }),
    user: config.postgres.osUser,
    env: { PGPASSFILE: config.postgres.passfile, PGAPPNAME: slotOf(config.node.name) },
    timeoutMs: 6 * 3_600_000,
    progress: true,
    concurrent: 'copy',
    done: needCopy ? undefined : (baseDone ?? 'the interrupted run finished the copy'),
  });
  const copyDone = needCopy ? undefined : (baseDone ?? 'done by the interrupted run');
  steps.push({
    kind: 'action',
    id: 'strip-copied-settings',
    title: "remove the master's host-specific settings that pg_basebackup copied (postgresql.auto.conf)",
    action: 'strip-auto-conf',
    args: { keys: HOST_SPECIFIC_AUTO_CONF, dataDir: staging },
    done: copyDone,
  });
  steps.push({
    kind: 'write',
    id: 'write-standby-signal',
    title: `write ${rendered.standbyFile.name} in the copy (it starts as a standby)`,
    path: path.join(staging, rendered.standbyFile.name),
    content: rendered.standbyFile.content,
    mode: 0o600,
    owner: config.postgres.osUser,
    done: copyDone,
  });
  steps.push(
    serviceStep(
      config,
      'stop',
      'stop-postgresql',
      'stop PostgreSQL',
      baseDone ?? (running || startForReconfigure ? undefined : 'PostgreSQL is stopped'),
    ),
  );
  steps.push({
    kind: 'action',
    id: 'mark-exchange-started',
    title: 'note that the data directories are being exchanged',
    action: 'record-state',
    args: { path: marker, data: { phase: 'swap', master: master.name, startedBy: 'setup-slave' } },
    done: baseDone ?? (swapping && !needCopy ? 'recorded by the interrupted run' : undefined),
  });
  steps.push({
    kind: 'backup',
    id: 'backup-data-dir',
    title: `move the old data directory into the backup folder`,
    method: 'move',
    from: config.postgres.dataDir,
    to: path.join(backupDir, 'postgresql-data'),
    done:
      baseDone ??
      (copyInPlace
        ? 'the data directory already holds the new copy'
        : local.dataDir.exists
          ? undefined
          : 'no data directory'),
  });
  steps.push({
    kind: 'action',
    id: 'move-copy-into-place',
    title: `put the copy in place (${staging} becomes ${config.postgres.dataDir})`,
    action: 'move-into-place',
    args: { from: staging, to: config.postgres.dataDir },
    done: baseDone ?? (copyInPlace ? 'done by the interrupted run' : undefined),
  });
  steps.push(...planConfigFileSteps(local, config, rendered));
  steps.push({
    kind: 'remove',
    id: 'clear-fence',
    title: 'clear an old fence record',
    path: statePaths(config).fence,
    done: local.fenced ? undefined : 'not fenced',
  });
  steps.push({
    kind: 'remove',
    id: 'mark-basebackup-finished',
    title: 'the base backup is complete',
    path: marker,
    done: baseDone,
  });
  const confChanged = steps.some(
    (s) => !s.done && ['write-chef-ha-conf', 'write-pg-hba', 'include-chef-ha-conf'].includes(s.id),
  );
  const standbyRunning = baseDone !== undefined && running;
  steps.push(
    serviceStep(
      config,
      'start',
      'start-postgresql',
      'start PostgreSQL as a hot standby',
      standbyRunning ? 'PostgreSQL runs as a standby' : undefined,
    ),
  );
  if (standbyRunning && confChanged) {
    steps.push(
      serviceStep(config, 'restart', 'restart-postgresql', 'restart PostgreSQL with the new settings'),
    );
  }
  steps.push({
    kind: 'wait',
    id: 'wait-streaming',
    title: `wait until ${master.name} reports this node streaming`,
    until: { name: 'standby-streaming', on: 'peer', applicationName: slotOf(config.node.name), sync: false },
    timeoutMs: config.replication.streamingTimeoutMs,
    intervalMs: 200,
  });
  if (reconfigureLate) {
    steps.push({ ...reconfigure, id: 'reconfigure-after-streaming', done: undefined });
  }
  if (config.replication.synchronous) {
    steps.push(...planSynchronousStandbySteps(config, facts.peer.server, master.name));
  }
  const anythingChanged = steps.some((s) => !s.done && s.kind !== 'wait');
  steps.push({
    kind: 'run',
    id: 'reindex',
    title: input.options.waitReindex
      ? 'chef-server-ctl reindex (search index from the replicated data)'
      : 'start chef-server-ctl reindex in the background (search index from the replicated data; `status` shows when it ends)',
    argv: [config.chefServer.ctl, 'reindex'],
    timeoutMs: config.chefServer.reindexTimeoutMs,
    background: input.options.waitReindex
      ? undefined
      : { log: path.join(statePaths(config).logs, 'reindex.log'), job: statePaths(config).reindexJob },
    done: anythingChanged ? undefined : 'nothing changed since the last reindex',
  });
  const todo = steps.filter((s) => !s.done && s.kind !== 'wait').length;
  return {
    command: 'setup-slave',
    summary:
      todo <= 0
        ? `${config.node.name} is already the streaming standby of ${master.name}`
        : `make ${config.node.name} the ${config.replication.synchronous ? 'synchronous ' : ''}streaming standby of ${master.name} (${todo} steps to do)`,
    steps,
    backupDir,
  };
}
