/**
 * The demo: two stand-in Chef Server 11 nodes on real PostgreSQL 15 (see docs/sandbox.md), set up as a
 * streaming pair with chef-ha-ctl, a chef-client's registration, kill -9 of the master's PostgreSQL,
 * failover, and proof that nothing a client relies on was lost. Everything is torn down at the end.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { downSandbox, upSandbox } from '../test/sandbox/index.js';
import {
  getClient,
  getNode,
  postmasterPid,
  putNode,
  registerClient,
  runCli,
  waitFor,
  type SandboxNode,
} from '../test/e2e/helpers.js';

const sync = process.argv.includes('--sync');
const say = (text: string): void => {
  console.log(`\n\x1b[1m== ${text}\x1b[0m`);
};
const show = (label: string, value: unknown): void => {
  console.log(`   ${label}: ${typeof value === 'string' ? value : JSON.stringify(value)}`);
};

async function step(node: SandboxNode, args: string[]): Promise<void> {
  console.log(`   $ chef-ha-ctl ${args.join(' ')}    (on ${node.name})`);
  const r = await runCli(node, args);
  const lines = r.stderr
    .trim()
    .split('\n')
    .filter((l) => /^\[\d+\/\d+\]/.test(l) && !/skipped/.test(l));
  for (const l of lines.filter((l) => /done/.test(l))) {
    console.log(`     ${l}`);
  }
  if (r.stdout.trim()) {
    console.log(r.stdout.trimEnd().replace(/^/gm, '     '));
  }
  if (r.code !== 0 && !(args[0] === 'status' && r.code === 8)) {
    console.log(r.stderr);
    throw new Error(`chef-ha-ctl ${args[0] ?? ''} exited ${r.code}`);
  }
}

const dir = await mkdtemp(join(tmpdir(), 'chef-ha-demo-'));
let failed = false;
try {
  say(`Building a sandbox of two stand-in Chef Server 11 nodes in ${dir}`);
  console.log(
    '   Each node has the omnibus tree, /etc/chef-server, a chef-server-ctl stand-in, a Chef API stand-in',
  );
  console.log(
    '   (erchef), the embedded cluster it runs on today, and a distribution PostgreSQL 15 cluster.',
  );
  const sb = await upSandbox(dir, { nodes: 2, mode: 'streaming', sync });
  const [a, b] = sb.nodes as [SandboxNode, SandboxNode];
  show('master', `${a.name}  Chef API ${a.chefApi}  PostgreSQL port ${a.postgres.port}`);
  show('slave', `${b.name}  Chef API ${b.chefApi}  PostgreSQL port ${b.postgres.port}`);

  say(
    `setup-master on ${a.name}: recipe override, move the Chef data to PostgreSQL 15, replication role, slot, bundle`,
  );
  await step(a, ['setup-master']);

  say(
    `setup-slave on ${b.name}: the master's keys, base backup, ${sync ? 'synchronous' : 'asynchronous'} streaming, reindex`,
  );
  await step(b, ['setup-slave', '--from-master']);

  say(`A chef-client registers itself and saves its node through ${a.name}'s Chef API`);
  const reg = await registerClient(a, 'web-01.example.test');
  show('POST /clients web-01.example.test', reg.status);
  show('PUT /nodes/web-01.example.test', (await putNode(a, 'web-01.example.test', { role: 'web' })).status);
  await waitFor('replication', async () => (await getClient(b, 'web-01.example.test')).status === 200, 5_000);
  show(
    `GET /clients/web-01.example.test on ${b.name} (the slave)`,
    (await getClient(b, 'web-01.example.test')).status,
  );

  say('status (from the slave)');
  await step(b, ['status']);

  say(`kill -9 of ${a.name}'s PostgreSQL (the master dies)`);
  const pm = await postmasterPid(a.postgres.dataDir);
  if (pm === undefined) {
    throw new Error('the master has no postmaster');
  }
  process.kill(pm, 'SIGKILL');
  show('killed postmaster pid', pm);
  show(`POST /clients on ${a.name} now`, (await registerClient(a, 'too-late')).status);

  say(`failover on ${b.name}: fence ${a.name} over ssh, promote, restart erchef, reindex`);
  const started = Date.now();
  await step(b, ['failover']);
  show('failover took', `${((Date.now() - started) / 1000).toFixed(2)} s`);

  say(`The node registered before the failure is still known on ${b.name}, and new registrations work`);
  show('GET /clients/web-01.example.test', (await getClient(b, 'web-01.example.test')).status);
  show('GET /nodes/web-01.example.test', (await getNode(b, 'web-01.example.test')).status);
  show('POST /clients web-02.example.test', (await registerClient(b, 'web-02.example.test')).status);

  say('status after failover');
  await step(b, ['status']);
  console.log(
    `\n   ${a.name} is fenced: if its PostgreSQL is started again it comes up read-only until \`chef-ha-ctl rejoin\`.`,
  );
} catch (error) {
  failed = true;
  console.error(
    `\ndemo failed: ${error instanceof Error ? error.message : String(error)}\n(sandbox logs are under ${dir})`,
  );
} finally {
  say('Tearing the sandbox down');
  await downSandbox(dir);
  console.log(failed ? '   done (with a failure above)' : '   done');
}
process.exitCode = failed ? 1 : 0;
