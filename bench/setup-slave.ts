/**
 * Benchmark: `chef-ha-ctl setup-slave --bundle` against a raw pg_basebackup of the same master.
 *
 *   npx tsx bench/setup-slave.ts [--gb 1] [--raw-runs 2] [--net loopback|netns] [--quiet-wait-s 180] [--keep]
 *
 * Builds a two-node sandbox, runs setup-master on chef-a, grows chef-a's opscode_chef to about --gb GiB
 * with Chef-shaped rows (nodes with 2–4 KB JSON, one client with a PEM public key per node), CHECKPOINT,
 * then times: raw pg_basebackups of chef-a (--raw-runs of them, before), setup-slave on chef-b end to
 * end, and --raw-runs raw pg_basebackups again (after). Prints the figures and the ratio setup-slave / raw (target ≤ 1.2).
 * With --net netns each node is its own host on a bridge (network namespaces and veth pairs, as two
 * machines on a LAN), and the raw copies run from chef-b's namespace as setup-slave's does; on loopback the
 * copy goes from the page cache over lo, 2–3 times faster than over the veth pair.
 * Needs root and a built CLI (`npm run build`).
 */
import { chmod, chown, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  bundlePath,
  duBytes,
  firstStepAtMs,
  formatMb,
  loadLine,
  machineLine,
  median,
  mustCli,
  now,
  pair,
  readNodeConfig,
  runCli,
  seconds,
  sh,
  sql,
  stepMs,
  stepTimings,
  withSandbox,
  waitForQuiet,
  type SandboxNode,
} from './lib.js';
import { inNetns } from '../test/sandbox/netns.js';
import type { NetMode } from '../test/sandbox/types.js';

const { values } = parseArgs({
  options: {
    gb: { type: 'string', default: '1' },
    'raw-runs': { type: 'string', default: '2' },
    'quiet-wait-s': { type: 'string', default: '180' },
    net: { type: 'string', default: 'loopback' },
    keep: { type: 'boolean', default: false },
  },
});
if (values.net !== 'loopback' && values.net !== 'netns') {
  console.error(`--net must be loopback or netns, not ${values.net}`);
  process.exit(2);
}
const net: NetMode = values.net;
const rawRuns = Number(values['raw-runs']);
/** How long each timed phase waits for the machine to be idle before it measures anyway. */
const quietWaitMs = Number(values['quiet-wait-s']) * 1000;
const gb = Number(values.gb);
if (!Number.isFinite(gb) || gb <= 0 || gb > 100 || !Number.isInteger(rawRuns) || rawRuns < 1) {
  console.error(
    'usage: npx tsx bench/setup-slave.ts [--gb N] [--raw-runs R] [--keep]   (N > 0, default 1; R ≥ 1, default 2)',
  );
  process.exit(2);
}
const targetBytes = gb * 1024 ** 3;

const ORG = '0'.repeat(32);
const REQUESTOR = '00000000000000000000000000005ced';
/** Nodes (and as many clients) per INSERT batch: about 45 MB. */
const BATCH = 10_000;

/** INSERT … SELECT generate_series of nodes g in [from, to]: Chef node JSON of 2–4 KB, stored as bytea. */
function insertNodes(from: number, to: number): string {
  return `
INSERT INTO nodes (id, authz_id, org_id, name, environment, last_updated_by, created_at, updated_at, serialized_object)
SELECT k.id, k.id, '${ORG}', 'bench-node-' || g, k.env, '${REQUESTOR}', now(), now(),
  convert_to(json_build_object(
    'name', 'bench-node-' || g,
    'chef_environment', k.env,
    'json_class', 'Chef::Node',
    'chef_type', 'node',
    'run_list', json_build_array('role[base]', 'recipe[ntp]', 'recipe[app::web' || (g % 7) || ']'),
    'normal', json_build_object('tags', json_build_array('bench'), 'app', json_build_object('port', 8000 + g % 100)),
    'default', json_build_object(),
    'override', json_build_object(),
    'automatic', json_build_object(
      'hostname', 'bench-node-' || g,
      'fqdn', 'bench-node-' || g || '.example.test',
      'domain', 'example.test',
      'ipaddress', '10.' || (g / 65536 % 256) || '.' || (g / 256 % 256) || '.' || (g % 256),
      'macaddress', upper(regexp_replace(substr(md5('mac' || g), 1, 12), '(..)(?!$)', '\\1:', 'g')),
      'platform', 'debian', 'platform_version', '12.' || (g % 9), 'platform_family', 'debian',
      'kernel', json_build_object('name', 'Linux', 'release', '6.1.0-' || (g % 30) || '-amd64',
                                  'machine', 'x86_64', 'os', 'GNU/Linux'),
      'cpu', json_build_object('total', 1 + g % 16, 'real', 1 + g % 4),
      'memory', json_build_object('total', (1 + g % 64) * 1048576 || 'kB'),
      'uptime_seconds', g * 37 % 9000000,
      'ohai_time', 1700000000 + g,
      'roles', json_build_array('base'),
      'recipes', json_build_array('ntp', 'app::web' || (g % 7)),
      'packages', p.pkgs)
  )::text, 'UTF8')
FROM generate_series(${from}, ${to}) g
CROSS JOIN LATERAL (SELECT '000000000000' || substr(md5('bench-node-' || g), 1, 20) AS id,
                           (ARRAY['_default', 'production', 'staging'])[1 + g % 3] AS env) k
CROSS JOIN LATERAL (
  SELECT json_object_agg('pkg-' || substr(md5(g || '-' || i), 1, 12),
                         json_build_object('version', (i % 9) || '.' || (g % 17) || '.' || i || '-' ||
                                           substr(md5(i || '/' || g), 1, 6), 'arch', 'amd64')) AS pkgs
  FROM generate_series(1, 25 + g % 36) i) p`;
}

/** One client per node, with a PEM-shaped public key (294 bytes of base64, as an RSA 2048 SPKI). */
function insertClients(from: number, to: number): string {
  const der = [...Array(9).keys()].map((i) => `sha256(('k${i}-' || g)::bytea)`).join(' || ');
  return `
INSERT INTO clients (id, org_id, authz_id, name, public_key, validator, last_updated_by, created_at, updated_at, pubkey_version, admin)
SELECT k.id, '${ORG}', k.id, 'bench-node-' || g,
  E'-----BEGIN PUBLIC KEY-----\\n' || encode(${der} || substr(sha256(('k9-' || g)::bytea), 1, 6), 'base64') ||
    E'\\n-----END PUBLIC KEY-----\\n',
  false, '${REQUESTOR}', now(), now(), 0, false
FROM generate_series(${from}, ${to}) g
CROSS JOIN LATERAL (SELECT '000000000000' || substr(md5('bench-client-' || g), 1, 20) AS id) k`;
}

const dbSize = async (n: SandboxNode): Promise<number> =>
  Number(await sql(n, `SELECT pg_database_size('opscode_chef')`, 'postgres'));

async function growMaster(master: SandboxNode): Promise<{ nodes: number; ms: number }> {
  const t0 = now();
  let next = 1;
  let size = await dbSize(master);
  while (size < targetBytes) {
    const to = next + BATCH - 1;
    await sql(master, `BEGIN; ${insertNodes(next, to)}; ${insertClients(next, to)}; COMMIT;`);
    next = to + 1;
    size = await dbSize(master);
    process.stderr.write(`\r  grown to ${formatMb(size)} of ${formatMb(targetBytes)} (${next - 1} nodes)   `);
  }
  process.stderr.write('\n');
  await sql(master, 'VACUUM (ANALYZE) nodes, clients');
  await sql(master, 'CHECKPOINT', 'postgres');
  return { nodes: next - 1, ms: now() - t0 };
}

/** Writes a 0600 pgpass owned by postgres with the replication secret (never printed). */
async function ownPassfile(master: SandboxNode, dir: string): Promise<string> {
  const cfg = await readNodeConfig(master);
  const secret = (await readFile(join(cfg.stateDir, 'secrets', 'replication.password'), 'utf8')).trim();
  const esc = (s: string): string => s.replace(/[\\:]/g, (c) => `\\${c}`);
  const pgpassDir = join(dir, 'bench-pgpass');
  await mkdir(pgpassDir, { recursive: true, mode: 0o700 });
  const file = join(pgpassDir, 'pgpass');
  await writeFile(file, `*:*:*:${esc(cfg.replicationUser)}:${esc(secret)}\n`, { mode: 0o600 });
  const ids = (await sh('id', ['-u', 'postgres'])).trim();
  const gid = (await sh('id', ['-g', 'postgres'])).trim();
  await chown(pgpassDir, Number(ids), Number(gid));
  await chown(file, Number(ids), Number(gid));
  await chmod(file, 0o600);
  return file;
}

interface RawResult {
  readonly ms: number;
  readonly bytes: number;
  /** CPU busy fraction of the machine just before. */
  readonly busyBefore: number;
}

/**
 * A raw pg_basebackup of the master as postgres into a fresh directory, then removed; run on `from`
 * (inside its namespace in netns mode), the host setup-slave copies to.
 */
async function rawBasebackup(
  master: SandboxNode,
  from: SandboxNode,
  user: string,
  passfile: string,
  parent: string,
  label: string,
): Promise<RawResult> {
  const target = join(parent, label);
  await rm(target, { recursive: true, force: true });
  const busyBefore = await waitForQuiet(`raw pg_basebackup ${label}`, quietWaitMs);
  const t0 = now();
  try {
    const [file, ...args] = inNetns(from.netns, [
      'runuser',
      '-u',
      'postgres',
      '--',
      'env',
      `PGPASSFILE=${passfile}`,
      'PGAPPNAME=bench_raw_basebackup',
      `${master.postgres.bindir}/pg_basebackup`,
      '-h',
      master.postgres.host,
      '-p',
      String(master.postgres.port),
      '-U',
      user,
      '-D',
      target,
      '-X',
      'stream',
      '--checkpoint=fast',
      '--no-password',
    ]);
    await sh(file!, args, { timeoutMs: 3_600_000 });
    const ms = now() - t0;
    return { ms, bytes: await duBytes(target), busyBefore };
  } finally {
    await rm(target, { recursive: true, force: true });
  }
}

const mbps = (r: RawResult): string => `${(r.bytes / 1024 / 1024 / (r.ms / 1000)).toFixed(0)} MB/s`;
const pct = (x: number): string => `${(x * 100).toFixed(0)}%`;
const list = (rs: readonly RawResult[]): string => rs.map((r) => seconds(r.ms)).join(', ');

async function main(): Promise<void> {
  console.log(`setup-slave benchmark: ${await machineLine()}`);
  console.log(
    `target database size ${gb} GiB; ${rawRuns} raw pg_basebackup(s) before and after; ${loadLine()}`,
  );
  await withSandbox('chef-ha-bench-slave-', { keep: values.keep, net }, async (sb, dir) => {
    const [a, b] = pair(sb);
    const m = await mustCli(a, ['setup-master']);
    console.error(`  sandbox up; setup-master on chef-a took ${seconds(m.totalMs)}`);
    const grow = await growMaster(a);
    const size = await dbSize(a);
    console.log(
      `chef-a opscode_chef: ${formatMb(size)} (${grow.nodes} nodes + ${grow.nodes} clients, loaded, vacuumed and checkpointed in ${seconds(grow.ms)})`,
    );

    const user = (await readNodeConfig(a)).replicationUser;
    const rawParent = join(dir, 'bench-raw');
    await mkdir(rawParent, { recursive: true });
    await sh('chown', ['postgres:postgres', rawParent]);
    await chmod(rawParent, 0o700);
    const own = await ownPassfile(a, dir);
    const before: RawResult[] = [];
    for (let i = 1; i <= rawRuns; i++) {
      const r = await rawBasebackup(a, b, user, own, rawParent, `before-${i}`);
      before.push(r);
      console.log(
        `raw pg_basebackup before #${i}: ${seconds(r.ms)} for ${formatMb(r.bytes)} (${mbps(r)}; machine ${pct(r.busyBefore)} busy just before)`,
      );
    }

    const bundle = await bundlePath(a);
    const slaveBusy = await waitForQuiet('setup-slave', quietWaitMs);
    const slave = await runCli(b, ['setup-slave', '--bundle', bundle]);
    if (slave.code !== 0) {
      throw new Error(`setup-slave exited ${slave.code}:\n${slave.stderr}`);
    }
    const steps = stepTimings(slave);
    console.log(
      `setup-slave --bundle, end to end: ${seconds(slave.totalMs)} (machine ${pct(slaveBusy)} busy just before)`,
    );
    // The reindex setup-slave started in the background: how long after setup-slave's exit it ended.
    const reindexExit = join((await readNodeConfig(b)).stateDir, 'logs', 'reindex.log.exit');
    let reindexEndMs = Number.NaN;
    for (const deadline = now() + 600_000; now() < deadline;) {
      const text = (await readFile(reindexExit, 'utf8').catch(() => '')).trim();
      if (text !== '') {
        reindexEndMs = now() - slave.endedAt;
        if (text !== '0') {
          throw new Error(`the background reindex exited ${text}`);
        }
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }

    const bPassfile = (await readNodeConfig(b)).passfile;
    const after: RawResult[] = [];
    for (let i = 1; i <= rawRuns; i++) {
      const r = await rawBasebackup(a, b, user, bPassfile, rawParent, `after-${i}`);
      after.push(r);
      console.log(
        `raw pg_basebackup after #${i}:  ${seconds(r.ms)} for ${formatMb(r.bytes)} (${mbps(r)}; machine ${pct(r.busyBefore)} busy just before)`,
      );
    }
    await rm(join(dir, 'bench-pgpass'), { recursive: true, force: true });

    const raw = median([...before, ...after].map((r) => r.ms));
    const rawBefore = median(before.map((r) => r.ms));
    const rawAfter = median(after.map((r) => r.ms));
    const copied = median([...before, ...after].map((r) => r.bytes));
    const bb = stepMs(steps, 'pg-basebackup') ?? Number.NaN;
    const reconfigure = stepMs(steps, 'reconfigure') ?? 0;
    const reindex = stepMs(steps, 'reindex') ?? 0;
    const waitStreaming = stepMs(steps, 'wait-streaming') ?? 0;
    // reconfigure and pg-basebackup run at the same time: the pair costs the longer of the two.
    const group = Math.max(bb, reconfigure);
    const known = new Set(['pg-basebackup', 'reconfigure', 'reindex', 'wait-streaming']);
    const otherSteps = steps.filter((x) => !known.has(x.id));
    const otherMs = otherSteps.reduce((sum, x) => sum + x.ms, 0);
    const stepSum = group + reindex + waitStreaming + otherMs;
    const outside = slave.totalMs - stepSum;
    const firstStep = firstStepAtMs(slave) ?? 0;
    const ratio = slave.totalMs / raw;

    console.log('\nsetup-slave steps that ran:');
    for (const x of steps) {
      console.log(`  ${x.id.padEnd(34)} ${seconds(x.ms).padStart(9)}`);
    }
    console.log(`  ${'(outside the steps)'.padEnd(34)} ${seconds(outside).padStart(9)}`);
    console.log(
      `    of which before the first step (node start, config, bundle, facts, plan): ${seconds(firstStep)}`,
    );

    const row = (label: string, value: string): void => {
      console.log(`  ${label.padEnd(38)} ${value}`);
    };
    console.log('\nsummary');
    row('database size (opscode_chef)', formatMb(size));
    row('copied by a raw pg_basebackup', formatMb(copied));
    row('setup-slave total', seconds(slave.totalMs));
    row('its pg-basebackup step', `${seconds(bb)} (${(copied / 1024 / 1024 / (bb / 1000)).toFixed(0)} MB/s)`);
    row('raw pg_basebackup before', `${list(before)} (median ${seconds(rawBefore)})`);
    row('raw pg_basebackup after', `${list(after)} (median ${seconds(rawAfter)})`);
    row('raw reference (median of all)', seconds(raw));
    row(
      'ratio setup-slave / raw',
      `${ratio.toFixed(2)} (vs before ${(slave.totalMs / rawBefore).toFixed(2)}, vs after ${(slave.totalMs / rawAfter).toFixed(2)}; target ≤ 1.20)`,
    );
    row('ratio pg-basebackup step / raw', (bb / raw).toFixed(2));
    row('overhead (total − raw)', seconds(slave.totalMs - raw));
    row('  pg-basebackup ‖ reconfigure − raw', seconds(group - raw));
    row('    (reconfigure alone, beside the copy)', seconds(reconfigure));
    row('  starting the background reindex', seconds(reindex));
    row('background reindex ended, after exit', seconds(reindexEndMs));
    row(
      'ratio incl. the background reindex',
      `${((slave.totalMs + reindexEndMs) / raw).toFixed(2)} (setup-slave until the search index is rebuilt)`,
    );
    row('  wait-streaming', seconds(waitStreaming));
    row(`  other steps (${otherSteps.length})`, seconds(otherMs));
    row('  outside the steps', seconds(outside));
    row('at the end', loadLine());
    console.log(
      `  verdict: ${ratio <= 1.2 ? 'target met' : 'target MISSED'} (setup-slave / raw = ${ratio.toFixed(2)})`,
    );
  });
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exitCode = 1;
});
