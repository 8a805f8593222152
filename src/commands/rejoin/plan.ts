/**
 * rejoin (streaming): a fenced old primary becomes the streaming standby of the new one. decideRejoin
 * says whether and how (pg_rewind, or a fresh base backup when rewind is impossible); planRejoin turns
 * that into steps. Both pure.
 */
import * as path from 'node:path';
import type { Config } from '../../core/config.js';
import type { PairFacts } from '../../core/facts.js';
import type { Plan, Step } from '../../core/plan.js';
import { SECRET_TOKEN } from '../../core/plan.js';
import { statePaths } from '../../core/context.js';
import type { ControlData } from '../../pg/controldata.js';
import { isCleanShutdown, parseHistory } from '../../pg/controldata.js';
import { parseLsn } from '../../pg/lsn.js';
import { createSlotSql } from '../../pg/queries.js';
import { quoteLiteral } from '../../pg/conninfo.js';
import { renderBasebackupArgv, renderRewindArgv } from '../../pg/version.js';
import { planConfigFileSteps, serviceStep, slotOf, type Rendered } from '../common.js';
import { HOST_SPECIFIC_AUTO_CONF } from '../setup-slave/plan.js';
import { planSynchronousStandbySteps } from '../sync-steps.js';

export interface RejoinOptions {
  /** Replace the data directory with a fresh base backup instead of rewinding it. */
  readonly basebackup: boolean;
  /** Copy the whole data directory into the backup folder before pg_rewind changes it. */
  readonly backupDataDir: boolean;
}

/** Facts rejoin needs beyond the pair's: the local control file and the new primary's timeline history. */
export interface RejoinFacts {
  readonly pair: PairFacts;
  /** pg_controldata of the local data directory, when it holds a readable cluster. */
  readonly control?: ControlData;
  /** The new primary's history file for its current timeline, when it has one. */
  readonly peerHistory?: string;
  /** The replication role may CHECKPOINT on the new primary (pg_checkpoint, PostgreSQL 15+). */
  readonly peerCanCheckpoint: boolean;
  /** The passfile holds the current replication secret. */
  readonly passfileCurrent: boolean;
}

export type RejoinDecision =
  | { readonly action: 'refuse'; readonly reason: string; readonly hint: string }
  | {
      readonly action: 'rejoin';
      /** Already the streaming standby of the new primary: every step is done. */
      readonly already: boolean;
      /** none: this node stopped cleanly before the split (a switchover), nothing to rewind. */
      readonly method: 'rewind' | 'basebackup' | 'none';
      readonly basebackupReason?: string;
      readonly localTimeline: number | undefined;
      readonly peerTimeline: number | undefined;
      /** Where this node's timeline and the new primary's split (from the new primary's history). */
      readonly divergedAt?: string;
      /** This node still took writes as a primary (not fenced): they are among the discarded. */
      readonly wasWritable: boolean;
    };

/** Decides. Never throws. */
export function decideRejoin(facts: RejoinFacts, config: Config, options: RejoinOptions): RejoinDecision {
  const me = config.node.name;
  const peer = config.peer.name;
  const { local, peer: peerFacts } = facts.pair;
  const server = local.pg.running ? local.pg.server : undefined;
  const peerServer = peerFacts.reachable ? peerFacts.server : undefined;
  if (!local.secretPresent) {
    return {
      action: 'refuse',
      reason: `${me} has no replication secret: it was never part of a chef-ha pair`,
      hint: 'set it up as a standby with `chef-ha-ctl setup-slave` instead',
    };
  }
  const writable = server !== undefined && !server.inRecovery && !server.readOnlyDefault;
  const localTimeline = server?.timeline ?? facts.control?.timeline;
  const peerTimeline = peerServer?.timeline ?? undefined;
  const peerIsNewerPrimary =
    peerServer !== undefined &&
    !peerServer.inRecovery &&
    localTimeline !== undefined &&
    peerTimeline !== undefined &&
    peerTimeline > localTimeline;
  if (writable && !peerIsNewerPrimary) {
    return {
      action: 'refuse',
      reason: `${me} is the pair's writable primary and ${peer} is not a newer primary (${peerServer ? `timelines ${localTimeline ?? '?'} and ${peerTimeline ?? '?'}${peerServer.inRecovery ? `, ${peer} is a standby` : ''}` : `${peer} does not answer`})`,
      hint: `to swap roles use \`chef-ha-ctl switchover\`; rejoin runs on an old primary after a failover`,
    };
  }
  if (!peerServer) {
    return {
      action: 'refuse',
      reason: `cannot reach ${peer}'s PostgreSQL at ${config.peer.address}:${config.peer.postgresPort} (${peerFacts.error ?? 'no answer'}); rejoin follows the new primary, which must be up`,
      hint: `start ${peer} (or finish the failover there with \`chef-ha-ctl failover\`), then run rejoin again`,
    };
  }
  if (peerServer.inRecovery) {
    return {
      action: 'refuse',
      reason: `${peer} is not a primary (it is in recovery, a standby); there is nothing to rejoin`,
      hint: `run \`chef-ha-ctl status\`; if ${peer} should be the primary, run \`chef-ha-ctl failover\` on ${peer} first`,
    };
  }
  if (peerServer.readOnlyDefault) {
    return {
      action: 'refuse',
      reason: `${peer} is a read-only (fenced) primary; a standby must follow a writable one`,
      hint: `run \`chef-ha-ctl status\` to see which node is the primary`,
    };
  }
  const localId = server?.systemIdentifier ?? facts.control?.systemIdentifier ?? null;
  if (localId !== null && peerServer.systemIdentifier !== null && localId !== peerServer.systemIdentifier) {
    return {
      action: 'refuse',
      reason: `${me}'s cluster (system id ${localId}) is not ${peer}'s (${peerServer.systemIdentifier}); rejoin only follows the same cluster`,
      hint: `make ${me} a standby of ${peer} with \`chef-ha-ctl setup-slave --from-master\` (its data directory is backed up first)`,
    };
  }
  if (localTimeline !== undefined && peerTimeline !== undefined && localTimeline > peerTimeline) {
    return {
      action: 'refuse',
      reason: `${peer} is on an older timeline (${peerTimeline}) than ${me} (${localTimeline}): ${me} is the newer primary`,
      hint: `run rejoin on ${peer} instead, or \`chef-ha-ctl status\` to see the pair`,
    };
  }
  const already =
    server !== undefined &&
    server.inRecovery &&
    server.walReceiver?.status === 'streaming' &&
    peerServer.replication.some((r) => r.application_name === slotOf(me) && r.state === 'streaming');
  let divergedAt: string | undefined;
  if (localTimeline !== undefined && peerTimeline !== undefined && peerTimeline > localTimeline) {
    divergedAt = parseHistory(facts.peerHistory ?? '').find((e) => e.parent === localTimeline)?.switchLsn;
  }
  let basebackupReason: string | undefined;
  if (options.basebackup) {
    basebackupReason = '--basebackup was given';
  } else if (local.basebackupPhase !== undefined) {
    basebackupReason = 'an interrupted base backup is in the data directory';
  } else if (!facts.control) {
    basebackupReason = `no readable cluster in ${config.postgres.dataDir}`;
  } else if (!local.binaries['pg_rewind']) {
    basebackupReason = `pg_rewind is missing from ${config.postgres.bindir}`;
  } else if (!facts.control.walLogHints && !facts.control.checksums) {
    basebackupReason = 'the cluster has neither wal_log_hints nor data checksums, which pg_rewind needs';
  }
  // After a clean shutdown the control file's checkpoint is the last record this node wrote; when the new
  // primary's timeline left this one after it, the new primary has all of it: nothing to rewind.
  const cleanBeforeSplit =
    !server &&
    facts.control !== undefined &&
    isCleanShutdown(facts.control) &&
    facts.control.checkpointLsn !== undefined &&
    divergedAt !== undefined &&
    parseLsn(facts.control.checkpointLsn) < parseLsn(divergedAt);
  return {
    action: 'rejoin',
    already: already && !options.basebackup,
    method: basebackupReason ? 'basebackup' : cleanBeforeSplit ? 'none' : 'rewind',
    ...(basebackupReason ? { basebackupReason } : {}),
    localTimeline,
    peerTimeline,
    ...(divergedAt ? { divergedAt } : {}),
    wasWritable: writable,
  };
}

export interface RejoinPlanInput {
  readonly facts: RejoinFacts;
  readonly decision: Extract<RejoinDecision, { action: 'rejoin' }>;
  readonly config: Config;
  readonly options: RejoinOptions;
  readonly rendered: Rendered & { readonly standbyFile: { readonly name: string; readonly content: string } };
  readonly backupDir: string;
}

/** Plans the rejoin. */
export function planRejoin(input: RejoinPlanInput): Plan {
  const { facts, decision, config, rendered, backupDir, options } = input;
  const local = facts.pair.local;
  const peerServer = facts.pair.peer.server;
  const peer = config.peer.name;
  const me = config.node.name;
  const pgc = config.postgres;
  const slot = slotOf(me);
  const done = decision.already ? `already streaming from ${peer}` : undefined;
  const running = local.pg.running;
  const steps: Step[] = [];
  steps.push({
    kind: 'write',
    id: 'write-passfile',
    title: `write the passfile PostgreSQL uses to reach ${peer}`,
    path: pgc.passfile,
    content: `*:*:*:${config.replication.user}:${SECRET_TOKEN}\n`,
    secret: 'replication',
    mode: 0o600,
    owner: pgc.osUser,
    done: facts.passfileCurrent ? 'passfile is current' : undefined,
  });
  // pg_rewind reads the source's control file: right after a promotion it still names the old timeline
  // until the first checkpoint ends, and pg_rewind then computes a wrong divergence point.
  const needRewind = decision.method === 'rewind' && !decision.already;
  const checkpointDone = needRewind ? undefined : (done ?? 'a base backup makes its own checkpoint');
  steps.push(
    facts.peerCanCheckpoint
      ? {
          kind: 'sql',
          id: 'checkpoint-new-primary',
          title: `CHECKPOINT on ${peer} (pg_rewind reads its control file)`,
          on: 'peer',
          database: 'postgres',
          text: 'CHECKPOINT',
          done: checkpointDone,
        }
      : {
          kind: 'wait',
          id: 'checkpoint-new-primary',
          title: `wait for ${peer}'s checkpoint after promotion (the replication role lacks pg_checkpoint: re-run setup-master there to grant it)`,
          until: { name: 'peer-checkpointed' },
          timeoutMs: 600_000,
          intervalMs: 200,
          done: checkpointDone,
        },
  );
  steps.push({
    kind: 'sql',
    id: 'create-slot-on-new-primary',
    title: `create replication slot ${slot} on ${peer}`,
    on: 'peer',
    database: 'postgres',
    text: createSlotSql(quoteLiteral(slot)),
    done: facts.pair.peer.slots.some((s) => s.slot_name === slot) ? 'the slot exists' : undefined,
  });
  steps.push(
    serviceStep(
      config,
      'stop',
      'stop-postgresql',
      'stop PostgreSQL',
      done ?? (running ? undefined : 'PostgreSQL is stopped'),
    ),
  );
  steps.push({
    kind: 'backup',
    id: 'backup-auto-conf',
    title: 'back up postgresql.auto.conf',
    method: 'copy',
    from: path.join(pgc.dataDir, 'postgresql.auto.conf'),
    to: path.join(backupDir, 'postgresql.auto.conf'),
    done: done ?? (facts.control ? undefined : 'no cluster to back up'),
  });
  steps.push({
    kind: 'backup',
    id: 'backup-data-dir',
    title: 'copy the whole data directory into the backup folder',
    method: 'copy',
    from: pgc.dataDir,
    to: path.join(backupDir, 'postgresql-data'),
    done:
      done ??
      (decision.method === 'none'
        ? 'nothing to rewind'
        : !needRewind
          ? 'a base backup moves the old data directory into the backup folder itself'
          : options.backupDataDir
            ? undefined
            : 'not asked (--backup-data-dir): pg_rewind rewrites only blocks changed since the divergence, and the WAL after it is kept'),
  });
  steps.push({
    kind: 'action',
    id: 'save-diverged-wal',
    title: 'keep the WAL written after the timelines split (the writes the failover lost) and measure it',
    action: 'save-diverged-wal',
    args: {
      divergedAt: decision.divergedAt ?? null,
      timeline: decision.localTimeline ?? 0,
      to: path.join(backupDir, 'pg_wal-after-divergence'),
      record: path.join(backupDir, 'divergence.json'),
    },
    done:
      done ??
      (decision.method === 'none'
        ? "nothing diverged: the new primary replayed all of this node's WAL"
        : decision.localTimeline === undefined || decision.localTimeline === decision.peerTimeline
          ? `${me} is on ${peer}'s timeline: nothing diverged`
          : facts.control
            ? undefined
            : 'no cluster to read'),
  });
  const conn = { host: config.peer.address, port: config.peer.postgresPort, user: config.replication.user };
  steps.push({
    kind: 'action',
    id: 'rewind',
    title:
      decision.method === 'basebackup'
        ? `fresh base backup from ${peer} (${decision.basebackupReason ?? ''})`
        : `pg_rewind from ${peer} (a fresh base backup if it fails)`,
    action: 'rewind',
    args: {
      ...(decision.method === 'basebackup' ? { basebackupReason: decision.basebackupReason } : {}),
      rewindArgv: renderRewindArgv(pgc.bindir, { ...conn, dataDir: pgc.dataDir }),
      basebackupArgv: renderBasebackupArgv(pgc.version, pgc.bindir, {
        ...conn,
        dataDir: pgc.dataDir,
        slotName: slot,
      }),
      env: { PGPASSFILE: pgc.passfile },
      applicationName: slot,
      moveTo: path.join(backupDir, 'postgresql-data'),
      marker: statePaths(config).basebackupMarker,
      record: path.join(backupDir, 'rewind.json'),
    },
    irreversible: true,
    done:
      done ??
      (decision.method === 'none'
        ? `${me} shut down cleanly at ${facts.control?.checkpointLsn ?? '?'}, before the timelines split at ${decision.divergedAt ?? '?'}: nothing to rewind`
        : undefined),
  });
  steps.push({
    kind: 'action',
    id: 'strip-copied-settings',
    title: `remove ${peer}'s host-specific settings that pg_rewind or pg_basebackup copied (postgresql.auto.conf)`,
    action: 'strip-auto-conf',
    args: { keys: HOST_SPECIFIC_AUTO_CONF },
    done,
  });
  const configSteps = planConfigFileSteps(local, config, rendered);
  steps.push(...configSteps);
  steps.push({
    kind: 'write',
    id: 'write-standby-signal',
    title: `write ${rendered.standbyFile.name} (start as a standby of ${peer})`,
    path: path.join(pgc.dataDir, rendered.standbyFile.name),
    content: rendered.standbyFile.content,
    mode: 0o600,
    owner: pgc.osUser,
    done,
  });
  steps.push({
    kind: 'remove',
    id: 'clear-fence',
    title: 'clear the fence record (this node follows the new primary now)',
    path: statePaths(config).fence,
    done: local.fenced ? undefined : 'not fenced',
  });
  steps.push(serviceStep(config, 'start', 'start-postgresql', 'start PostgreSQL as a hot standby', done));
  if (decision.already && configSteps.some((s) => !s.done)) {
    steps.push(
      serviceStep(config, 'restart', 'restart-postgresql', 'restart PostgreSQL with the new settings'),
    );
  }
  steps.push({
    kind: 'wait',
    id: 'wait-streaming',
    title: `wait until ${peer} reports this node streaming`,
    until: { name: 'standby-streaming', on: 'peer', applicationName: slot, sync: false },
    timeoutMs: config.replication.streamingTimeoutMs,
    intervalMs: 50,
  });
  if (config.replication.synchronous && peerServer) {
    steps.push(...planSynchronousStandbySteps(config, peerServer, peer));
  }
  const todo = steps.filter((s) => !s.done && s.kind !== 'wait').length;
  steps.push({
    kind: 'action',
    id: 'record-rejoin',
    title: 'record the rejoin in the state directory',
    action: 'record-state',
    args: {
      path: statePaths(config).history,
      append: true,
      data: {
        event: 'rejoin',
        node: me,
        primary: peer,
        method: decision.method,
        divergedAt: decision.divergedAt ?? null,
        backupDir,
      },
    },
    done: todo === 0 ? 'nothing changed' : undefined,
  });
  return {
    command: 'rejoin',
    summary:
      todo === 0
        ? `${me} is already the streaming standby of ${peer}`
        : `make ${me} the ${config.replication.synchronous ? 'synchronous ' : ''}standby of ${peer}${decision.method === 'rewind' ? ' by pg_rewind' : decision.method === 'basebackup' ? ' by a fresh base backup' : ''}${decision.divergedAt ? ` (timelines split at ${decision.divergedAt})` : ''}`,
    steps,
    backupDir,
  };
}
