/**
 * rejoin in londiste mode, on the old master after a failover: the rows it has that the new root lacks
 * or holds differently (the writes the failover lost) are written to `<stateDir>/lost-rows-<time>.json`
 * and counted; then it becomes a branch of the new root without the packaged `resurrect` (which crashes
 * in Skytools 3.8.1): the replicated tables are dumped into the backup folder, the local cascade state is
 * dropped here only (table registrations with their triggers, the node), the new root forgets the old node, `create-branch`
 * with the new root as provider, `add-table` copies the tables afresh, the fence is cleared.
 */
import type { CommandContext } from '../../core/context.js';
import { backupDirFor, statePaths, withLock } from '../../core/context.js';
import type { Config } from '../../core/config.js';
import { gatherPairFacts, type PairFacts } from '../../core/facts.js';
import { executePlan } from '../../core/execute.js';
import { RefusedError } from '../../core/errors.js';
import type { Plan, Step } from '../../core/plan.js';
import * as path from 'node:path';
import { gatherLondisteFacts, type LondisteFacts } from '../../londiste/facts.js';
import { locationConnstr, qualifiedTables } from '../../londiste/names.js';
import {
  addTablesStep,
  daemonsStep,
  grantStep,
  localNode,
  londisteStep,
  peerNode,
  refuseBadTables,
  truncateSql,
} from '../../londiste/plan.js';
import { lostRowsPath, type LostRowsFile } from '../../londiste/lost-rows.js';
import { serviceStep } from '../common.js';
import { confirmPlan } from '../confirm.js';
import { quoteLiteral } from '../../pg/conninfo.js';

/**
 * Removes this node's cascade state locally: `londiste.local_remove_table` (drops the triggers) for
 * every registered table, `pgq_node.drop_node` of itself (its queue, subscribers and the member list),
 * then empties the replicated tables. The extensions stay, and so does `londiste.applied_execute`, so
 * that schema changes this node already has (execute-sql) are not applied twice by the new branch.
 * Nothing here reaches another node.
 */
export function dropLocalNodeSql(config: Config): string {
  const q = quoteLiteral(config.londiste.queue);
  return `DO $$
BEGIN
  IF to_regclass('londiste.table_info') IS NOT NULL THEN
    PERFORM londiste.local_remove_table(${q}, table_name) FROM londiste.table_info WHERE queue_name = ${q};
  END IF;
  IF to_regclass('pgq_node.node_info') IS NOT NULL THEN
    PERFORM pgq_node.drop_node(${q}, node_name) FROM pgq_node.node_info WHERE queue_name = ${q};
  END IF;
END
$$;
${truncateSql(config)}`;
}

export interface RejoinLondisteInput {
  readonly facts: PairFacts;
  readonly lf: LondisteFacts;
  readonly config: Config;
  readonly backupDir: string;
  readonly lostRowsFile: string;
}

/**
 * Plans the Londiste rejoin. Pure.
 * @throws RefusedError when the peer is not the root, or this node is the only root.
 */
export function planRejoinLondiste(input: RejoinLondisteInput): Plan {
  const { facts, lf, config, backupDir } = input;
  const me = config.node.name;
  const peer = config.peer.name;
  if (!lf.peer.reachable) {
    throw new RefusedError(
      `rejoin: the new root ${peer} does not answer (${lf.peer.error ?? 'no answer'}); nothing was changed`,
      undefined,
      `start PostgreSQL on ${peer} (and run \`chef-ha-ctl failover\` there if it is not the root yet)`,
    );
  }
  if (lf.peer.nodeType !== 'root') {
    throw new RefusedError(
      `rejoin: ${peer} is not the root of queue ${config.londiste.queue} (${lf.peer.nodeType ? `it is a ${lf.peer.nodeType}` : 'not a member'}); nothing was changed`,
      undefined,
      lf.peer.nodeType === 'branch' && lf.local.nodeType === 'root'
        ? `${me} is the root and ${peer} its branch already: there is nothing to rejoin`
        : `run \`chef-ha-ctl failover\` on ${peer} first`,
    );
  }
  refuseBadTables(config, lf.peer, peer);
  const local = lf.local;
  const running = facts.local.pg.running;
  const fenceFile = facts.local.dataDir.standbySignal;
  const readOnly = /^\s*default_transaction_read_only\s*=\s*'?on'?/m.test(facts.local.dataDir.autoConf ?? '');
  const isBranch = local.reachable && local.nodeType === 'branch' && local.provider === peerNode(config);
  const allOk =
    isBranch &&
    qualifiedTables(config).every((t) => local.tables.some((x) => x.table === t && x.state === 'ok'));
  const branchDone = isBranch ? `${me} is a branch of ${peer} already` : undefined;
  const steps: Step[] = [];

  steps.push(
    serviceStep(
      config,
      'start',
      'start-postgresql',
      'start PostgreSQL (read-only while the fence is in place) to compare the tables',
      running ? 'PostgreSQL is running' : undefined,
    ),
  );
  steps.push({
    kind: 'action',
    id: 'save-lost-rows',
    title: `write the rows ${me} has and ${peer} lacks or holds differently (by primary key) to ${input.lostRowsFile}`,
    action: 'londiste',
    args: { op: 'lost-rows', file: input.lostRowsFile },
    done: branchDone,
  });
  steps.push({
    kind: 'action',
    id: 'backup-replicated-tables',
    title: `pg_dump ${config.chefServer.tables.join(', ')} before they are copied afresh from ${peer}`,
    action: 'londiste',
    args: { op: 'dump-tables', file: path.join(backupDir, 'replicated-tables.dump') },
    done: branchDone,
  });
  steps.push({
    kind: 'run',
    id: 'stop-chef-services',
    title: 'stop erchef while the tables are emptied and copied (no write may land in between)',
    argv: [config.chefServer.ctl, 'stop', 'erchef'],
    timeoutMs: 120_000,
    done: allOk && !local.paused ? `${me} is a branch of ${peer} with every table ok` : undefined,
  });
  const d = lf.daemons;
  steps.push({
    kind: 'action',
    id: 'stop-londiste-daemons',
    title: "stop the supervisor, pgqd and the old root's worker",
    action: 'londiste',
    args: { op: 'daemons-stop' },
    done:
      isBranch || (d.supervisorPid === undefined && d.pgqdPid === undefined && d.workerPid === undefined)
        ? isBranch
          ? branchDone
          : 'none runs'
        : undefined,
  });
  const unfenced = !fenceFile && !readOnly;
  steps.push(
    serviceStep(
      config,
      'stop',
      'stop-postgresql',
      'stop PostgreSQL to lift the read-only fence',
      // The first step started it when it was down.
      unfenced ? 'not fenced' : undefined,
    ),
  );
  steps.push({
    kind: 'remove',
    id: 'remove-fence-file',
    title: 'remove standby.signal (the fence): the branch must write the copied rows',
    path: path.join(config.postgres.dataDir, 'standby.signal'),
    done: fenceFile ? undefined : 'no standby.signal',
  });
  steps.push({
    kind: 'action',
    id: 'clear-read-only',
    title: 'remove default_transaction_read_only from postgresql.auto.conf (set by the fence)',
    action: 'strip-auto-conf',
    args: { keys: ['default_transaction_read_only'] },
    done: readOnly ? undefined : 'not set',
  });
  steps.push(
    serviceStep(
      config,
      'start',
      'start-postgresql-writable',
      'start PostgreSQL (writable; erchef is stopped)',
      unfenced ? 'PostgreSQL runs without the fence' : undefined,
    ),
  );
  steps.push({
    kind: 'sql',
    id: 'drop-old-root-state',
    title: `drop ${me}'s stale root state here only (its table registrations and triggers, its node of queue ${config.londiste.queue}) and empty ${config.chefServer.tables.join(', ')}`,
    on: 'local',
    database: config.chefServer.database,
    text: dropLocalNodeSql(config),
    irreversible: true,
    done: branchDone,
  });
  const known = lf.peer.members.some((m) => m.name === localNode(config));
  steps.push({
    kind: 'action',
    id: 'forget-old-node-on-new-root',
    title: `on ${peer}: forget node ${localNode(config)} (its location and the consumer takeover kept for it), nowhere else`,
    action: 'londiste',
    args: { op: 'forget-node-on-peer', node: localNode(config) },
    done: isBranch ? branchDone : known ? undefined : `${peer} does not know ${localNode(config)}`,
  });
  steps.push(
    londisteStep(
      config,
      'create-branch',
      `create-branch ${localNode(config)} with provider ${peer}`,
      [
        'create-branch',
        localNode(config),
        locationConnstr(config, 'node'),
        `--provider=${locationConnstr(config, 'peer')}`,
      ],
      branchDone,
    ),
  );
  steps.push(grantStep(config, isBranch ? local : { ...local, grantsDone: false }));
  steps.push(
    addTablesStep(
      config,
      isBranch ? local : { ...local, tables: [] },
      `add-table on the branch (before the worker starts, so that it copies ${config.londiste.parallelCopies} tables at once from ${peer})`,
    ),
  );
  steps.push(daemonsStep(isBranch ? lf : { ...lf, daemons: {} }, true));
  steps.push({
    kind: 'action',
    id: 'wait-tables-ok',
    title: 'wait until every table is copied and in sync (state ok)',
    action: 'londiste',
    args: { op: 'wait-sync' },
    done: allOk ? 'every table is ok' : undefined,
  });
  steps.push({
    kind: 'remove',
    id: 'clear-fence',
    title: 'clear the fence record',
    path: statePaths(config).fence,
    done: facts.local.fenced ? undefined : 'not fenced',
  });
  const changed = steps.filter((s) => !s.done).length;
  steps.push({
    kind: 'run',
    id: 'start-chef-services',
    title: 'start erchef',
    argv: [config.chefServer.ctl, 'start', 'erchef'],
    timeoutMs: 120_000,
    done: changed === 0 ? 'nothing changed' : undefined,
  });
  steps.push({
    kind: 'run',
    id: 'reindex',
    title: 'chef-server-ctl reindex (search index from the copied data)',
    argv: [config.chefServer.ctl, 'reindex'],
    timeoutMs: config.chefServer.reindexTimeoutMs,
    done: changed === 0 ? 'nothing changed' : undefined,
  });
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
        mode: 'londiste',
        node: me,
        root: peer,
        lostRows: input.lostRowsFile,
        backupDir,
      },
    },
    done: changed === 0 ? 'nothing changed' : undefined,
  });
  return {
    command: 'rejoin',
    summary:
      changed === 0
        ? `${me} is already a Londiste branch of ${peer} with every table ok`
        : `make ${me} a Londiste branch of the new root ${peer} (lost rows to ${input.lostRowsFile}, tables copied afresh)`,
    steps,
    backupDir,
  };
}

export async function rejoinLondiste(ctx: CommandContext): Promise<void> {
  await withLock(ctx, 'rejoin', async () => {
    const config = ctx.config;
    const started = ctx.ports.clock.now();
    const [facts, lf] = await Promise.all([gatherPairFacts(ctx), gatherLondisteFacts(ctx)]);
    const lostRowsFile = lostRowsPath(config, started);
    const plan = planRejoinLondiste({
      facts,
      lf,
      config,
      backupDir: backupDirFor(config, started),
      lostRowsFile,
    });
    await confirmPlan(
      ctx,
      plan,
      `${plan.summary}: ${config.chefServer.tables.join(', ')} on ${config.node.name} are replaced by ${config.peer.name}'s rows. Go on?`,
    );
    const result = await executePlan(ctx, plan, { dryRun: ctx.options.dryRun });
    if (ctx.options.dryRun) {
      return;
    }
    const seconds = Number(((ctx.ports.clock.now() - started) / 1000).toFixed(2));
    let lost: LostRowsFile | undefined;
    if (result.completed.includes('save-lost-rows')) {
      const text = await ctx.ports.files.readTextIfExists(lostRowsFile);
      lost = text ? (JSON.parse(text) as LostRowsFile) : undefined;
    }
    const already = plan.steps.every((s) => s.done !== undefined);
    const perTable = lost
      ? config.chefServer.tables
          .map((t) => `${t} ${lost.rows.filter((r) => r.table === t).length}`)
          .join(', ')
      : '';
    ctx.reporter.result(
      already
        ? `${config.node.name} is already a Londiste branch of ${config.peer.name}: nothing to do.`
        : `${config.node.name} is a Londiste branch of ${config.peer.name} (${seconds}s).${lost ? ` ${lost.count} rows it had that ${config.peer.name} lacks or holds differently (${perTable}) are in ${lostRowsFile}; they were not applied to ${config.peer.name}.` : ''} Backups: ${plan.backupDir ?? ''}`,
      {
        command: 'rejoin',
        mode: 'londiste',
        node: config.node.name,
        root: config.peer.name,
        already,
        lostRows: lost ? { count: lost.count, file: lostRowsFile } : null,
        completed: result.completed,
        skipped: result.skipped,
        seconds,
        backupDir: already ? null : (plan.backupDir ?? null),
      },
    );
  });
}
