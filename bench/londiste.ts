/**
 * Londiste mode figures on the sandbox (real pgqd and londiste, chef-ha's tuned ticking):
 *   1. initial copy of 3 x N Chef-shaped rows by setup-slave (add-table → every table ok);
 *   2. replication lag at 100 tx/s for 30 s (markers timed by a trigger on the slave: no polling);
 *   3. failover write gap: kill -9 of the master → first accepted write on the slave's Chef API.
 * Prints figures; asserts nothing. Run as root after `npm run build`:
 *   npx tsx bench/londiste.ts [--rows 10000] [--seconds 30] [--tps 100] [--quiet-wait-s 180]
 *                             [--copy-only] [--logs DIR] [--seed-after-setup]
 * --copy-only stops after the initial copy; --logs copies the slave's Londiste logs (the worker's and each
 * copy process's, with Skytools' timestamps) into DIR before the sandbox is torn down. The N rows are
 * seeded before setup-master (the Chef data exists before chef-ha); --seed-after-setup seeds them after it.
 */
import { spawn } from 'node:child_process';
import { cp, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  bundlePath,
  machineLine,
  median,
  mustCli,
  now,
  pair,
  postmasterPid,
  putNode,
  seconds,
  sleep,
  sql,
  startCli,
  stepTimings,
  firstStepAtMs,
  loadLine,
  waitForQuiet,
  withSandbox,
  type SandboxNode,
} from './lib.js';
import { psqlScript } from '../test/sandbox/standins/psql.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

const ROWS = arg('--rows', 10_000);
const SECONDS = arg('--seconds', 30);
const TPS = arg('--tps', 100);
/** How long each phase waits for an idle machine before it measures anyway. */
const QUIET_MS = arg('--quiet-wait-s', 180) * 1000;
const logsAt = process.argv.indexOf('--logs');
const LOGS = logsAt >= 0 ? process.argv[logsAt + 1] : undefined;

function pct(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

const seedSql = (n: number): string => `
INSERT INTO osc_users (id, authz_id, username, email, public_key, hashed_password, salt, hash_type, last_updated_by, created_at, updated_at)
  SELECT md5('u'||g), md5('ua'||g), 'user'||g, 'user'||g||'@example.com', repeat(md5('pk'||g), 12), md5('pw'||g), md5('s'||g), 'bcrypt', md5('u1'), now(), now()
  FROM generate_series(1, ${n}) g;
INSERT INTO clients (id, org_id, authz_id, name, public_key, validator, last_updated_by, created_at, updated_at, pubkey_version)
  SELECT md5('c'||g), md5('org'), md5('ca'||g), 'client'||g, repeat(md5('cpk'||g), 12), g % 50 = 0, md5('u1'), now(), now(), 0
  FROM generate_series(1, ${n}) g;
INSERT INTO nodes (id, authz_id, org_id, name, environment, last_updated_by, created_at, updated_at, serialized_object)
  SELECT md5('n'||g), md5('na'||g), md5('org'), 'node'||g, (array['_default','prod','staging'])[g%3+1], md5('u1'), now(), now(),
         convert_to(repeat(md5('obj'||g)||md5(random()::text), 40), 'UTF8')
  FROM generate_series(1, ${n}) g;`;

/** psql on chef-server's embedded cluster (where the Chef data is before setup-master moves it). */
async function embeddedSql(node: SandboxNode, text: string): Promise<void> {
  const e = node.embeddedPostgres;
  const target = { osUser: 'postgres', bindir: node.postgres.bindir, socketDir: e.socketDir, port: e.port };
  const r = await psqlScript({ ...target, user: e.superuser }, 'opscode_chef', text);
  if (r.code !== 0) {
    throw new Error(`psql on ${node.name}'s embedded cluster exited ${r.code}: ${r.stderr.trim()}`);
  }
}

await withSandbox('chef-ha-bench-londiste-', { mode: 'londiste' }, async (sb) => {
  const [a, b] = pair(sb);
  console.log(`# ${await machineLine()}`);
  // The Chef data is there before chef-ha is (as on a Chef Server that gets chef-ha, and as in the lab):
  // the rows are seeded before setup-master, so the queue holds no events for them. --seed-after-setup
  // seeds them after setup-master: the branch's worker then first reads (and skips) one event per row.
  const seedAfter = process.argv.includes('--seed-after-setup');
  if (!seedAfter) {
    // before chef-ha, chef-server's data is in its embedded cluster: setup-master moves it
    await embeddedSql(a, seedSql(ROWS));
  }
  await mustCli(a, ['setup-master']);
  if (seedAfter) {
    await sql(a, seedSql(ROWS));
  }
  await sql(a, 'ANALYZE');

  // 1. initial copy
  await waitForQuiet('initial copy', QUIET_MS);
  const run = await mustCli(b, ['setup-slave', '--bundle', await bundlePath(a)]);
  const steps = stepTimings(run);
  // add-table, then the worker (daemons), then the wait until every table is ok.
  const add = steps.find((s) => s.id === 'add-tables');
  const daemons = steps.find((s) => s.id === 'start-londiste-daemons');
  const wait = steps.find((s) => s.id === 'wait-tables-ok');
  const copyMs = (add?.ms ?? 0) + (daemons?.ms ?? 0) + (wait?.ms ?? 0);
  console.log(
    `initial copy of 3 x ${ROWS} rows: ${seconds(copyMs)} (add-table ${seconds(add?.ms ?? 0)} + daemons ${seconds(daemons?.ms ?? 0)} + until every table ok ${seconds(wait?.ms ?? 0)}); setup-slave total ${seconds(run.totalMs)}; ${loadLine()}`,
  );
  if (LOGS !== undefined) {
    const cfg = JSON.parse(await readFile(b.config, 'utf8')) as { londiste?: { dir?: string } };
    const from = join(cfg.londiste?.dir ?? '/var/lib/postgresql/chef-ha-londiste', 'log');
    await cp(from, LOGS, { recursive: true }).catch((error: unknown) => {
      console.log(`could not copy the Londiste logs from ${from}: ${String(error)}`);
    });
    console.log(`the slave's Londiste logs are in ${LOGS}`);
  }
  if (process.argv.includes('--copy-only')) {
    return;
  }

  // 2. lag at TPS: markers into osc_users on the master, their arrival stamped by a trigger on the slave
  await sql(
    b,
    `CREATE TABLE IF NOT EXISTS bench_arrival (id char(32) PRIMARY KEY, arrived timestamp NOT NULL);
     CREATE OR REPLACE FUNCTION bench_stamp() RETURNS trigger LANGUAGE plpgsql AS
       $$BEGIN IF NEW.username LIKE 'marker-%' THEN INSERT INTO bench_arrival VALUES (NEW.id, clock_timestamp()::timestamp); END IF; RETURN NEW; END$$;
     DROP TRIGGER IF EXISTS bench_stamp ON osc_users;
     CREATE TRIGGER bench_stamp AFTER INSERT ON osc_users FOR EACH ROW EXECUTE FUNCTION bench_stamp();
     ALTER TABLE osc_users ENABLE ALWAYS TRIGGER bench_stamp;`,
  );
  await waitForQuiet('lag under load', QUIET_MS);
  const psql = spawn(
    'runuser',
    [
      '-u',
      'postgres',
      '--',
      `${a.postgres.bindir}/psql`,
      '-X',
      '-q',
      '-h',
      a.postgres.socketDir,
      '-p',
      String(a.postgres.port),
      '-d',
      'opscode_chef',
    ],
    { stdio: ['pipe', 'ignore', 'inherit'] },
  );
  let seq = 0;
  let inserted = 0;
  let markers = 0;
  const send = (text: string): void => {
    psql.stdin.write(`${text}\n`);
  };
  const t0 = now();
  let nextMarker = t0 + 250 + Math.random() * 500;
  while (now() - t0 < SECONDS * 1000) {
    const r = Math.random();
    seq += 1;
    if (r < 0.45 || inserted === 0) {
      inserted += 1;
      send(
        `INSERT INTO nodes (id, authz_id, org_id, name, environment, last_updated_by, created_at, updated_at, serialized_object) VALUES (md5('l${inserted}'), md5('la${inserted}'), md5('org'), 'load-${inserted}', '_default', md5('u1'), now(), now(), convert_to(repeat(md5('x${seq}'), 80), 'UTF8'));`,
      );
    } else if (r < 0.85) {
      const table = ['nodes', 'clients', 'osc_users'][seq % 3] ?? 'nodes';
      const prefix = table === 'nodes' ? 'n' : table === 'clients' ? 'c' : 'u';
      send(`UPDATE ${table} SET updated_at = now() WHERE id = md5('${prefix}${1 + (seq % ROWS)}');`);
    } else {
      send(`DELETE FROM nodes WHERE id = md5('l${1 + Math.floor(Math.random() * inserted)}');`);
    }
    if (now() >= nextMarker) {
      markers += 1;
      send(
        `INSERT INTO osc_users (id, authz_id, username, hashed_password, salt, hash_type, last_updated_by, created_at, updated_at) VALUES (md5('m${markers}'), md5('ma${markers}'), 'marker-${markers}', 'x', 's', 'bcrypt', md5('u1'), clock_timestamp(), now());`,
      );
      nextMarker = now() + 250 + Math.random() * 500;
    }
    await sleep(Math.max(0, t0 + (seq * 1000) / TPS - now()));
  }
  psql.stdin.end();
  await new Promise((r) => psql.on('close', r));
  await sleep(3000);
  const lags = (
    await sql(
      b,
      `SELECT extract(epoch FROM a.arrived - u.created_at) FROM bench_arrival a JOIN osc_users u USING (id) ORDER BY 1`,
    )
  )
    .split('\n')
    .filter(Boolean)
    .map(Number);
  console.log(
    `lag at ${TPS} tx/s for ${SECONDS} s (${seq} statements, ${markers} markers, ${lags.length} arrived): median ${median(lags).toFixed(3)} s, p90 ${pct(lags, 90).toFixed(3)} s, max ${Math.max(...lags).toFixed(3)} s`,
  );

  // 3. failover write gap
  await waitForQuiet('failover', QUIET_MS);
  const pid = await postmasterPid(a.postgres.dataDir);
  if (!pid) {
    throw new Error('no master postmaster');
  }
  const kill = now();
  process.kill(pid, 'SIGKILL');
  const fo = startCli(b, ['failover']);
  let firstOk: number | undefined;
  for (let i = 0; firstOk === undefined && now() - kill < 120_000; i += 1) {
    const status = await putNode(b.chefApi, `gap-${i}`, 2_000);
    if (status >= 200 && status < 300) {
      firstOk = now();
    } else {
      await sleep(5);
    }
  }
  const foRun = await fo.done;
  console.log(
    `failover: kill -9 → first accepted write on the slave ${firstOk ? seconds(firstOk - kill) : 'never'}; failover command ${seconds(foRun.totalMs)} (exit ${foRun.code}); ${loadLine()}`,
  );
  // Where the failover's time goes: CLI start-up and facts (until the first step starts), then each step.
  const first = firstStepAtMs(foRun);
  console.log(
    `failover split: start-up + facts ${first === undefined ? '?' : seconds(first)}; ${stepTimings(foRun)
      .map((t) => `${t.id} ${seconds(t.ms)}`)
      .join(', ')}`,
  );
});
