/**
 * Benchmark: the health endpoint's throughput and latency on /primary.
 *
 *   npx tsx bench/health.ts [--seconds 5] [--concurrency 1,8,32] [--quiet-wait-s 180]
 *
 * Builds a two-node sandbox, runs setup-master on chef-a, starts the real `chef-ha-ctl health-server`
 * for chef-a (its snapshot refreshes every second from PostgreSQL 15 while it serves), waits for
 * /primary 200, then loads GET /primary with a hand-rolled client on node:http: for each concurrency C,
 * C keep-alive connections each send requests back to back for --seconds; then the same with a new
 * connection per request (as HAProxy's checks do). Prints requests/s, p50/p99/max latency and any
 * answer that is not 200. The client runs on the same cores as the server, so the figures are a floor.
 * When `wrk` is installed (Debian's package: apt-get install wrk), the same loads follow with wrk, a
 * load generator in C that leaves more of the two cores to the server. Targets: >= 5000 req/s,
 * p99 <= 5 ms. Needs root and a built CLI (`npm run build`).
 */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { Agent, request } from 'node:http';
import { parseArgs } from 'node:util';
import {
  CLI,
  getStatus,
  machineLine,
  mustCli,
  now,
  pair,
  waitFor,
  waitForQuiet,
  withSandbox,
} from './lib.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    concurrency: { type: 'string', default: '1,8,32' },
    'quiet-wait-s': { type: 'string', default: '180' },
  },
});
const durationMs = Number(values.seconds) * 1000;
const levels = values.concurrency.split(',').map(Number);
const quietWaitMs = Number(values['quiet-wait-s']) * 1000;
if (!(durationMs > 0) || levels.some((c) => !Number.isInteger(c) || c < 1)) {
  console.error('usage: npx tsx bench/health.ts [--seconds S] [--concurrency 1,8,32]');
  process.exit(2);
}

interface Result {
  readonly requests: number;
  readonly non200: number;
  readonly errors: number;
  readonly latenciesMs: number[];
  readonly elapsedMs: number;
}

function get(port: number, agent: Agent | false): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/primary',
        method: 'GET',
        agent,
        headers: agent ? {} : { connection: 'close' },
      },
      (res) => {
        res.resume();
        res.on('end', () => {
          resolve(res.statusCode ?? 0);
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function load(port: number, concurrency: number, keepAlive: boolean): Promise<Result> {
  const agent = keepAlive ? new Agent({ keepAlive: true, maxSockets: concurrency }) : false;
  const latenciesMs: number[] = [];
  let non200 = 0;
  let errors = 0;
  const start = now();
  const until = start + durationMs;
  const worker = async (): Promise<void> => {
    while (now() < until) {
      const t = now();
      try {
        const status = await get(port, agent);
        latenciesMs.push(now() - t);
        if (status !== 200) {
          non200 += 1;
        }
      } catch {
        errors += 1;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsedMs = now() - start;
  if (agent) {
    agent.destroy();
  }
  return { requests: latenciesMs.length, non200, errors, latenciesMs, elapsedMs };
}

function pct(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

function line(label: string, r: Result): string {
  const s = [...r.latenciesMs].sort((x, y) => x - y);
  return `${label.padEnd(28)} ${String(Math.round((r.requests / r.elapsedMs) * 1000)).padStart(7)} req/s   p50 ${pct(s, 50).toFixed(2)} ms   p99 ${pct(s, 99).toFixed(2)} ms   max ${(s[s.length - 1] ?? Number.NaN).toFixed(2)} ms   non-200 ${r.non200}   errors ${r.errors}`;
}

/** wrk's summary: requests/s, p50 and p99 (its --latency distribution), non-2xx/3xx and socket errors. */
async function wrk(port: number, connections: number): Promise<string | undefined> {
  let out: string;
  try {
    ({ stdout: out } = await promisify(execFile)(
      'wrk',
      [
        '-t1',
        `-c${connections}`,
        `-d${Math.round(durationMs / 1000)}s`,
        '--latency',
        `http://127.0.0.1:${port}/primary`,
      ],
      { timeout: durationMs + 30_000 },
    ));
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT' ? undefined : `wrk failed: ${String(error)}`;
  }
  const rate = /Requests\/sec:\s+([0-9.]+)/.exec(out)?.[1] ?? '?';
  const p50 = /^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? '?';
  const p99 = /^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? '?';
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? '0';
  const errors = /Socket errors:(.*)/.exec(out)?.[1]?.trim() ?? 'none';
  return (
    `wrk, keep-alive, ${connections} connection(s)`.padEnd(36) +
    ` ${String(Math.round(Number(rate))).padStart(7)} req/s   p50 ${p50}   p99 ${p99}   non-200 ${non2xx}   socket errors ${errors}`
  );
}

async function main(): Promise<void> {
  console.log(await machineLine());
  await withSandbox('chef-ha-bench-health-', {}, async (sb) => {
    const [a] = pair(sb);
    await mustCli(a, ['setup-master']);
    const child = spawn(process.execPath, [CLI, '--config', a.config, 'health-server'], { stdio: 'ignore' });
    let pinger: NodeJS.Timeout | undefined;
    try {
      const url = `http://127.0.0.1:${a.healthPort}/primary`;
      await waitFor('/primary 200', async () => (await getStatus(url)) === 200, 30_000);
      // As HAProxy does, check every 250 ms throughout, also between the phases: chef-b is not set up, so
      // chef-a's peer is unreachable, and a pause in the checks would look like a cut-off node (the health
      // endpoint then re-checks its peer and answers 503 meanwhile, health.recheckAfterGapMs).
      pinger = setInterval(() => void getStatus(url), 250);
      await load(a.healthPort, 8, true); // warm-up
      for (const c of levels) {
        await waitForQuiet(`keep-alive x${c}`, quietWaitMs);
        console.log(line(`keep-alive, ${c} connection(s)`, await load(a.healthPort, c, true)));
      }
      await waitForQuiet('new connection per request', quietWaitMs);
      console.log(line('new connection per request x8', await load(a.healthPort, 8, false)));
      for (const c of levels) {
        await waitForQuiet(`wrk x${c}`, quietWaitMs);
        const text = await wrk(a.healthPort, c);
        if (text === undefined) {
          console.log('wrk is not installed (apt-get install wrk): no wrk figures');
          break;
        }
        console.log(text);
      }
    } finally {
      clearInterval(pinger);
      child.kill('SIGTERM');
    }
  });
}

await main();
