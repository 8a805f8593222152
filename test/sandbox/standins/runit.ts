/**
 * Stand-in of runit as Chef Server 11 uses it (`/opt/chef-server/{sv,service,init}`, `sv` in LSB mode).
 * There is no runsvdir/runsv here: a service "runs" when the process recorded in
 * `sv/<svc>/supervise/standin.json` is alive (for `postgresql`, the postmaster of the embedded cluster),
 * and a dead service is NOT restarted automatically. Every service has a `log` companion (a labelled
 * placeholder process standing in for svlogd) so that status lines have runit's exact shape:
 *   run: erchef: (pid 1540) 86399s; run: log: (pid 1539) 86400s
 * erchef is the Chef API stand-in (a real HTTP server), postgresql is a real PostgreSQL 15 cluster, and
 * the six other services are placeholder processes (`sleep infinity` with a labelled argv[0]).
 */
import { existsSync } from 'node:fs';
import { lstat, mkdir, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CHEF_SERVICES, PG_BINDIR, STANDINS_DIR, TSX_IMPORT, type NodePaths } from '../paths.js';
import { isAlive, run, runAs, spawnDetached, stopPid, userIds, waitFor } from '../proc.js';

/** OS account the embedded cluster runs as in the sandbox (stand-in for opscode-pgsql). */
export const EMBEDDED_OS_USER = 'postgres';
/** Database superuser the embedded cluster was initdb'd with (as in Chef Server 11). */
export const EMBEDDED_SUPERUSER = 'opscode-pgsql';

interface SuperviseState {
  pid: number | null;
  /** ms epoch of the last change up/down */
  since: number;
}

export interface ServiceStatus {
  readonly name: string;
  readonly exists: boolean;
  readonly enabled: boolean;
  readonly up: boolean;
  readonly pid: number | null;
  readonly seconds: number;
  readonly normallyDown: boolean;
  readonly log: { up: boolean; pid: number | null; seconds: number } | null;
}

function stateFile(p: NodePaths, svc: string, log: boolean): string {
  return join(p.svDir, svc, ...(log ? ['log'] : []), 'supervise', 'standin.json');
}

async function readState(p: NodePaths, svc: string, log: boolean): Promise<SuperviseState | null> {
  try {
    return JSON.parse(await readFile(stateFile(p, svc, log), 'utf8')) as SuperviseState;
  } catch {
    return null;
  }
}

async function writeState(p: NodePaths, svc: string, log: boolean, state: SuperviseState): Promise<void> {
  const file = stateFile(p, svc, log);
  await mkdir(join(file, '..'), { recursive: true });
  await writeFile(file, JSON.stringify(state) + '\n');
  // runit keeps the pid in supervise/pid too
  await writeFile(join(file, '..', 'pid'), state.pid === null ? '' : `${state.pid}\n`);
}

/** The embedded postmaster's pid and start time from postmaster.pid (null when not running). */
export async function embeddedPostmaster(p: NodePaths): Promise<{ pid: number; startedMs: number } | null> {
  try {
    const lines = (await readFile(join(p.embeddedDataDir, 'postmaster.pid'), 'utf8')).split('\n');
    const pid = Number(lines[0]);
    if (Number.isInteger(pid) && pid > 0 && (await isAlive(pid))) {
      return { pid, startedMs: Number(lines[2] ?? '0') * 1000 };
    }
  } catch {
    // not running
  }
  return null;
}

export function isEnabled(p: NodePaths, svc: string): boolean {
  return existsSync(join(p.serviceDir, svc));
}

/** Services that have a folder in sv/, sorted (omnibus-ctl get_all_services). */
export async function allServices(p: NodePaths): Promise<string[]> {
  try {
    return (await readdir(p.svDir)).filter((n) => !n.startsWith('.')).sort();
  } catch {
    return [];
  }
}

export async function serviceStatus(p: NodePaths, svc: string): Promise<ServiceStatus> {
  const exists = existsSync(join(p.svDir, svc));
  const enabled = isEnabled(p, svc);
  const now = Date.now();
  const state = await readState(p, svc, false);
  let pid: number | null = null;
  let since = state?.since ?? now;
  if (svc === 'postgresql') {
    const pm = await embeddedPostmaster(p);
    if (pm !== null) {
      pid = pm.pid;
      since = pm.startedMs;
    }
  } else if (state?.pid !== null && state?.pid !== undefined && (await isAlive(state.pid))) {
    pid = state.pid;
  }
  const logState = await readState(p, svc, true);
  let log: ServiceStatus['log'] = null;
  if (logState !== null) {
    const logUp = logState.pid !== null && (await isAlive(logState.pid));
    log = {
      up: logUp,
      pid: logUp ? logState.pid : null,
      seconds: Math.max(0, Math.floor((now - logState.since) / 1000)),
    };
  }
  return {
    name: svc,
    exists,
    enabled,
    up: pid !== null,
    pid,
    seconds: Math.max(0, Math.floor((now - since) / 1000)),
    normallyDown: existsSync(join(p.svDir, svc, 'down')),
    log,
  };
}

/** One status line in runit's `svstatus_print` format. */
export function formatStatus(s: ServiceStatus): string {
  const main = s.up
    ? `run: ${s.name}: (pid ${s.pid ?? 0}) ${s.seconds}s${s.normallyDown ? ', normally down' : ''}`
    : `down: ${s.name}: ${s.seconds}s${s.normallyDown ? '' : ', normally up'}`;
  if (s.log === null) {
    return main;
  }
  const log = s.log.up
    ? `run: log: (pid ${s.log.pid ?? 0}) ${s.log.seconds}s`
    : `down: log: ${s.log.seconds}s, normally up`;
  return `${main}; ${log}`;
}

function placeholderArgv(label: string): string[] {
  // argv[0] carries a label (with the node root, so `down` can recognise it) instead of "sleep"
  return ['/bin/bash', '-c', 'exec -a "$0" sleep infinity', label];
}

async function startLog(p: NodePaths, svc: string): Promise<void> {
  const st = await readState(p, svc, true);
  if (st?.pid !== null && st?.pid !== undefined && (await isAlive(st.pid))) {
    return;
  }
  const logDir = join(p.logDir, svc);
  await mkdir(logDir, { recursive: true });
  const pid = spawnDetached(placeholderArgv(`svlogd-standin -tt ${logDir} (${join(p.svDir, svc, 'log')})`), {
    logFile: '/dev/null',
    cwd: '/',
  });
  await writeState(p, svc, true, { pid, since: Date.now() });
}

async function startEmbeddedPostgres(p: NodePaths): Promise<void> {
  if ((await embeddedPostmaster(p)) !== null) {
    return;
  }
  await mkdir(p.embeddedLogDir, { recursive: true });
  const { uid, gid } = await userIds(EMBEDDED_OS_USER);
  await run(['chown', `${uid}:${gid}`, p.embeddedLogDir]);
  const r = await runAs(
    EMBEDDED_OS_USER,
    [
      join(p.embeddedBin, 'pg_ctl'),
      '-D',
      p.embeddedDataDir,
      '-l',
      join(p.embeddedLogDir, 'current'),
      '-w',
      '-t',
      '30',
      'start',
    ],
    { cwd: '/' },
  );
  if (r.code !== 0) {
    throw new Error(`pg_ctl start of the embedded cluster failed: ${(r.stderr || r.stdout).trim()}`);
  }
}

async function stopEmbeddedPostgres(p: NodePaths): Promise<void> {
  if ((await embeddedPostmaster(p)) === null) {
    return;
  }
  // runit control/t: "received TERM from runit, sending INT instead to force quit connections"
  await runAs(
    EMBEDDED_OS_USER,
    [join(PG_BINDIR, 'pg_ctl'), '-D', p.embeddedDataDir, '-m', 'fast', '-w', '-t', '30', 'stop'],
    {
      cwd: '/',
    },
  );
}

/** Base URL erchef listens on, from its app.config ({ip, ...} and {port, ...}); null before reconfigure. */
export function erchefBaseUrl(p: NodePaths): Promise<string | null> {
  return readFile(p.erchefConfig, 'utf8').then(
    (t) => {
      const port = /\{port,\s*(\d+)\}/.exec(t)?.[1];
      const ip = /\{ip,\s*"([^"]+)"\}/.exec(t)?.[1] ?? '127.0.0.1';
      return port === undefined ? null : `http://${ip === '0.0.0.0' ? '127.0.0.1' : ip}:${port}`;
    },
    () => null,
  );
}

async function startProcess(p: NodePaths, svc: string): Promise<void> {
  if (svc === 'postgresql') {
    await startEmbeddedPostgres(p);
    await writeState(p, svc, false, { pid: (await embeddedPostmaster(p))?.pid ?? null, since: Date.now() });
    return;
  }
  const st = await readState(p, svc, false);
  if (st?.pid !== null && st?.pid !== undefined && (await isAlive(st.pid))) {
    return;
  }
  const logDir = join(p.logDir, svc);
  await mkdir(logDir, { recursive: true });
  let pid: number;
  if (svc === 'erchef') {
    pid = spawnDetached(
      [process.execPath, '--import', TSX_IMPORT, join(STANDINS_DIR, 'chef-api.ts'), '--root', p.root],
      { logFile: join(logDir, 'current'), cwd: '/', env: { ...process.env, CHEF_STANDIN_ROOT: p.root } },
    );
    const base = await erchefBaseUrl(p);
    const ok = await waitFor(async () => {
      if (!(await isAlive(pid))) {
        return true;
      }
      if (base === null) {
        return true;
      }
      try {
        const res = await fetch(`${base}/_ping`, { signal: AbortSignal.timeout(500) });
        await res.body?.cancel();
        return true;
      } catch {
        return false;
      }
    }, 20_000);
    if (!ok || !(await isAlive(pid))) {
      await writeState(p, svc, false, { pid: null, since: Date.now() });
      throw new Error(`erchef stand-in did not start; see ${join(logDir, 'current')}`);
    }
  } else {
    pid = spawnDetached(placeholderArgv(`${svc}-standin (${join(p.svDir, svc)})`), {
      logFile: '/dev/null',
      cwd: '/',
    });
  }
  await writeState(p, svc, false, { pid, since: Date.now() });
}

async function stopProcess(p: NodePaths, svc: string): Promise<void> {
  if (svc === 'postgresql') {
    await stopEmbeddedPostgres(p);
    await writeState(p, svc, false, { pid: null, since: Date.now() });
    return;
  }
  const st = await readState(p, svc, false);
  if (st?.pid !== null && st?.pid !== undefined) {
    await stopPid(st.pid, { graceMs: 5_000 });
  }
  await writeState(p, svc, false, { pid: null, since: Date.now() });
}

/** sv start (service must be enabled); starts its log companion too. */
export async function svStart(p: NodePaths, svc: string): Promise<void> {
  await startLog(p, svc);
  await startProcess(p, svc);
}

/** sv stop (the log companion keeps running, as with runit). */
export async function svStop(p: NodePaths, svc: string): Promise<void> {
  await stopProcess(p, svc);
}

/** Sends a signal to the service's process (sv hup/int/term/kill). */
export async function svSignal(p: NodePaths, svc: string, signal: NodeJS.Signals): Promise<void> {
  const s = await serviceStatus(p, svc);
  if (s.pid !== null) {
    try {
      process.kill(s.pid, signal);
    } catch {
      // already gone
    }
  }
  await sleep(100);
}

/**
 * runit_service definition: sv/<svc>/{run,log/run,log/main/,control/t}, the `down` file, the init link to
 * sv and the service link. Returns true when the service link had to be created.
 */
export async function defineService(
  p: NodePaths,
  svc: string,
  runScript: string,
  down = false,
): Promise<boolean> {
  const dir = join(p.svDir, svc);
  await mkdir(join(dir, 'log', 'main'), { recursive: true });
  await mkdir(join(dir, 'supervise'), { recursive: true });
  await mkdir(join(dir, 'log', 'supervise'), { recursive: true });
  await writeFile(join(dir, 'run'), runScript, { mode: 0o755 });
  await writeFile(join(dir, 'log', 'run'), `#!/bin/sh\nexec svlogd -tt ${join(p.logDir, svc)}\n`, {
    mode: 0o755,
  });
  if (svc === 'postgresql') {
    await mkdir(join(dir, 'control'), { recursive: true });
    await writeFile(
      join(dir, 'control', 't'),
      '#!/bin/sh\necho "received TERM from runit, sending INT instead to force quit connections"\n' +
        `${join(p.embeddedBin, 'sv')} interrupt postgresql\n`,
      { mode: 0o755 },
    );
  }
  if (down) {
    await writeFile(join(dir, 'down'), '');
  } else {
    await rm(join(dir, 'down'), { force: true });
  }
  await mkdir(p.initDir, { recursive: true });
  await mkdir(p.serviceDir, { recursive: true });
  const initLink = join(p.initDir, svc);
  if (
    !(await lstat(initLink).then(
      () => true,
      () => false,
    ))
  ) {
    await symlink(join(p.embeddedBin, 'sv'), initLink);
  }
  const serviceLink = join(p.serviceDir, svc);
  if (
    await lstat(serviceLink).then(
      () => true,
      () => false,
    )
  ) {
    return false;
  }
  await symlink(dir, serviceLink);
  return true;
}

/** runit_service ... action :disable: stop it and delete the service link. Returns true if it changed anything. */
export async function disableService(p: NodePaths, svc: string): Promise<boolean> {
  const s = await serviceStatus(p, svc);
  if (s.up) {
    await stopProcess(p, svc);
  }
  const link = join(p.serviceDir, svc);
  const had = await lstat(link).then(
    () => true,
    () => false,
  );
  await rm(link, { force: true });
  return had || s.up;
}

/** Every pid the supervision stand-in knows for this node (services and log companions). */
export async function knownPids(p: NodePaths): Promise<number[]> {
  const pids: number[] = [];
  for (const svc of [...new Set([...(await allServices(p)), ...CHEF_SERVICES])]) {
    for (const log of [false, true]) {
      const st = await readState(p, svc, log);
      if (st?.pid !== null && st?.pid !== undefined) {
        pids.push(st.pid);
      }
    }
  }
  return pids;
}
