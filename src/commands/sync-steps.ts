/**
 * The steps that make this node (a streaming standby) its primary's synchronous standby: setup-slave
 * and rejoin end with them. Pure.
 */
import type { Config } from '../core/config.js';
import type { ServerFacts } from '../core/facts.js';
import type { Step } from '../core/plan.js';
import { quoteLiteral } from '../pg/conninfo.js';
import { featuresFor } from '../pg/version.js';
import { renderSshArgv } from '../chef/ssh.js';
import { slotOf } from './common.js';
import { syncStandbyNamesFor } from './setup-master/plan.js';

/**
 * enable-synchronous (over SQL on PostgreSQL 15+, where the replication role may ALTER SYSTEM this one
 * setting; by the primary's own setup-master over ssh before 15), then wait-sync.
 */
export function planSynchronousStandbySteps(
  config: Config,
  primary: ServerFacts,
  primaryName: string,
): Step[] {
  const steps: Step[] = [];
  const want = syncStandbyNamesFor(config.node.name);
  const alreadySync = primary.synchronousStandbyNames === want;
  const ssh = renderSshArgv(config, ['setup-master', '--yes']);
  const grants = featuresFor(primary.major).parameterGrants;
  if (grants) {
    steps.push({
      kind: 'sql',
      id: 'enable-synchronous',
      title: `make this node ${primaryName}'s synchronous standby`,
      on: 'peer',
      database: 'postgres',
      text: `ALTER SYSTEM SET synchronous_standby_names = ${quoteLiteral(want)}`,
      done: alreadySync ? 'synchronous_standby_names already names this node' : undefined,
    });
    steps.push({
      kind: 'sql',
      id: 'reload-master',
      title: `reload ${primaryName}'s settings`,
      on: 'peer',
      database: 'postgres',
      text: 'SELECT pg_reload_conf()',
      done: alreadySync ? 'nothing changed' : undefined,
    });
  } else if (ssh) {
    // Before 15 only a superuser may change it: the primary's own setup-master does, now that we stream.
    steps.push({
      kind: 'run',
      id: 'enable-synchronous',
      title: `make this node ${primaryName}'s synchronous standby (setup-master on ${primaryName} over ssh)`,
      argv: ssh,
      timeoutMs: 300_000,
      done: alreadySync ? 'synchronous_standby_names already names this node' : undefined,
    });
  } else {
    steps.push({
      kind: 'action',
      id: 'enable-synchronous',
      title: `make this node ${primaryName}'s synchronous standby`,
      action: 'record-state',
      args: {},
      done: alreadySync
        ? 'synchronous_standby_names already names this node'
        : `PostgreSQL ${primary.major} lets only a superuser switch it and peer.ssh is not set: run \`chef-ha-ctl setup-master\` on ${primaryName} now`,
    });
  }
  if (alreadySync || grants || ssh) {
    steps.push({
      kind: 'wait',
      id: 'wait-sync',
      title: `wait until ${primaryName} reports this node sync`,
      until: { name: 'standby-streaming', on: 'peer', applicationName: slotOf(config.node.name), sync: true },
      timeoutMs: config.replication.streamingTimeoutMs,
      intervalMs: 200,
    });
  }
  return steps;
}
