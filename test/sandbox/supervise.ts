/**
 * A small supervisor for the sandbox's services (services.ts), standing in for what runit or systemd
 * does for the package's service definitions: runs one command, appends its output to a log, keeps its
 * pid in a pid file, restarts it when it dies (1 s, doubling up to 10 s; back to 1 s after 30 s of
 * uptime), and on SIGTERM stops it by pid (SIGTERM, then SIGKILL after 5 s) and exits.
 *
 *   node supervise.ts --name NAME --pid-file FILE --log FILE -- ARGV...
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, openSync, rmSync, writeFileSync } from 'node:fs';

function parse(argv: readonly string[]): { name: string; pidFile: string; log: string; cmd: string[] } {
  const sep = argv.indexOf('--');
  const opts = argv.slice(0, sep < 0 ? argv.length : sep);
  const cmd = sep < 0 ? [] : argv.slice(sep + 1);
  const get = (flag: string): string => {
    const v = opts[opts.indexOf(flag) + 1];
    if (!opts.includes(flag) || v === undefined) {
      throw new Error(`supervise: ${flag} is required`);
    }
    return v;
  };
  if (cmd.length === 0) {
    throw new Error('supervise: nothing to run after --');
  }
  return { name: get('--name'), pidFile: get('--pid-file'), log: get('--log'), cmd };
}

const { name, pidFile, log, cmd } = parse(process.argv.slice(2));
const say = (msg: string): void => {
  appendFileSync(log, `${new Date().toISOString()} [supervise ${name} pid ${process.pid}] ${msg}\n`);
};

let child: ChildProcess | null = null;
let stopping = false;
let delayMs = 1_000;
let restartTimer: NodeJS.Timeout | null = null;

function start(): void {
  restartTimer = null;
  const fd = openSync(log, 'a');
  const startedAt = Date.now();
  const [file, ...args] = cmd as [string, ...string[]];
  const c = spawn(file, args, { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  child = c;
  c.on('error', (error) => {
    say(`could not start ${cmd.join(' ')}: ${error.message}`);
  });
  if (c.pid !== undefined) {
    writeFileSync(pidFile, `${c.pid}\n`);
    say(`started pid ${c.pid}: ${cmd.join(' ')}`);
  }
  c.on('exit', (code, signal) => {
    child = null;
    rmSync(pidFile, { force: true });
    if (stopping) {
      say(`stopped (${signal ?? `exit ${code ?? '?'}`})`);
      process.exit(0);
    }
    delayMs = Date.now() - startedAt > 30_000 ? 1_000 : delayMs;
    say(`exited (${signal ?? `exit ${code ?? '?'}`}); restarting in ${delayMs} ms`);
    restartTimer = setTimeout(start, delayMs);
    delayMs = Math.min(delayMs * 2, 10_000);
  });
}

function stop(): void {
  if (stopping) {
    return;
  }
  stopping = true;
  if (restartTimer !== null) {
    clearTimeout(restartTimer);
  }
  const c = child;
  if (c?.pid === undefined) {
    say('stopped');
    process.exit(0);
  }
  c.kill('SIGTERM');
  setTimeout(() => {
    if (child !== null) {
      say(`pid ${c.pid ?? '?'} still runs 5 s after SIGTERM: SIGKILL`);
      c.kill('SIGKILL');
    }
  }, 5_000).unref();
}

process.on('SIGTERM', stop);
process.on('SIGINT', stop);
start();
