/** status: both nodes side by side; exit 0 healthy, 8 degraded, 9 broken. */
import type { CommandContext } from '../../core/context.js';
import { gatherPairFacts } from '../../core/facts.js';
import { StatusExit } from '../../core/errors.js';
import { summarizeStatus, type PairStatus } from './summarize.js';
import { formatStatus } from './format.js';
import { urlHost } from '../../ports/index.js';
import { explainAuto, type AutoStatus } from '../../monitor/leader.js';
import { describeError } from '../../core/errors.js';

/** Reads the leader key when etcd is configured; the explain line says why no failover happens. */
async function autoStatus(ctx: CommandContext, summary: PairStatus): Promise<AutoStatus | undefined> {
  const { config } = ctx;
  if (config.dcs.etcd.endpoints.length === 0) {
    return undefined;
  }
  const { openEtcdDcs } = await import('../../monitor/dcs.js');
  const dcs = await openEtcdDcs(config);
  try {
    const view = await dcs.read();
    const primaryUp = summary.nodes.some((n) => n.role === 'primary');
    const standby = summary.nodes.find((n) => n.role === 'standby')?.name;
    return explainAuto(view, undefined, primaryUp, standby, config);
  } catch (error) {
    return explainAuto(undefined, describeError(error), false, undefined, config);
  } finally {
    dcs.close();
  }
}

/** The lines `status` adds about automatic failover. Pure. */
export function formatAuto(a: AutoStatus): string {
  const lease = a.leaseRemainingMs === null ? '' : `, lease ${(a.leaseRemainingMs / 1000).toFixed(0)} s left`;
  return [
    `automatic failover: leader ${a.leader ?? '(none)'}, term ${a.term ?? '?'}${lease}${a.paused ? ', PAUSED' : ''}${a.lastRenewal ? `, last renewal ${a.lastRenewal}` : ''}${a.reachable ? '' : ', etcd UNREACHABLE'}`,
    `explain: ${a.explain}`,
  ].join('\n');
}

/** Each node's health endpoint answer on /primary, asked in parallel with a short timeout. */
async function probeHealthAnswers(ctx: CommandContext): Promise<Map<string, number>> {
  const { config } = ctx;
  const targets: [string, string][] = [
    [config.node.name, `http://${urlHost(config.node.address)}:${config.health.port}/primary`],
    [config.peer.name, `http://${urlHost(config.peer.address)}:${config.peer.healthPort}/primary`],
  ];
  const codes = await Promise.all(targets.map(([, url]) => ctx.ports.http.status(url, HEALTH_TIMEOUT_MS)));
  return new Map(targets.map(([name], i) => [name, codes[i] ?? 0]));
}

const HEALTH_TIMEOUT_MS = 500;

/** Adds the health answers to the summary. Pure. */
export function withHealthAnswers(summary: PairStatus, answers: ReadonlyMap<string, number>): PairStatus {
  return {
    ...summary,
    nodes: summary.nodes.map((n) => {
      const code = answers.get(n.name);
      return code === undefined ? n : { ...n, health: code };
    }),
  };
}

export async function status(ctx: CommandContext): Promise<void> {
  if (ctx.config.replication.mode === 'londiste') {
    await (await import('./londiste.js')).londisteStatus(ctx);
    return;
  }
  const [facts, answers] = await Promise.all([gatherPairFacts(ctx), probeHealthAnswers(ctx)]);
  const summary = withHealthAnswers(summarizeStatus(facts, ctx.config), answers);
  const auto = await autoStatus(ctx, summary);
  ctx.reporter.result(
    auto ? `${formatStatus(summary)}\n${formatAuto(auto)}` : formatStatus(summary),
    auto ? { ...summary, automatic: auto } : summary,
  );
  if (summary.exitCode !== 0) {
    // The table already said why; the exit code carries the verdict.
    throw new StatusExit(summary.exitCode as 8 | 9, '');
  }
}
