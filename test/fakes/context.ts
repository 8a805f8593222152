/**
 * A CommandContext made of fakes. `commandContext()` returns the context and every fake in it, so that a
 * test can script the shell and PostgreSQL and inspect what was called afterwards.
 */
import type { Config } from '../../src/core/config.js';
import type { CommandContext, GlobalOptions } from '../../src/core/context.js';
import { createSecretStore } from '../../src/core/context.js';
import type { Archive, HaproxyRuntime, Http, Ports, Process, Templates } from '../../src/ports/index.js';
import { config as buildConfig } from './config.js';
import { FakePostgres } from './fake-pg.js';
import { FakeShell } from './fake-shell.js';
import { FixedClock } from './fixed-clock.js';
import { MemoryFiles } from './memory-files.js';
import { RecordingReporter } from './reporter.js';

export class FakeProcess implements Process {
  readonly alive = new Set<number>();
  constructor(
    readonly pid = 4100,
    readonly isRoot = false,
    readonly user = 'root',
    readonly packageRoot = '/opt/chef-ha/embedded/lib/chef-ha',
    readonly selfCommand: readonly [string, ...string[]] = ['/opt/chef-ha/bin/chef-ha-ctl'],
  ) {
    this.alive.add(pid);
  }
  isAlive(pid: number): boolean {
    return this.alive.has(pid);
  }
  readonly signals: { readonly pid: number; readonly signal: string }[] = [];
  readonly spawned: { readonly argv: readonly string[]; readonly logFile: string }[] = [];
  kill(pid: number, signal: NodeJS.Signals): boolean {
    this.signals.push({ pid, signal });
    return this.alive.delete(pid);
  }
  spawnDetached(argv: readonly [string, ...string[]], logFile: string): number {
    this.spawned.push({ argv, logFile });
    const pid = 5000 + this.spawned.length;
    this.alive.add(pid);
    return pid;
  }
}

export class FakeArchive implements Archive {
  readonly calls: { readonly method: 'create' | 'extract'; readonly file: string; readonly dir: string }[] =
    [];
  create(file: string, cwd: string): Promise<void> {
    this.calls.push({ method: 'create', file, dir: cwd });
    return Promise.resolve();
  }
  extract(file: string, dest: string): Promise<void> {
    this.calls.push({ method: 'extract', file, dir: dest });
    return Promise.resolve();
  }
}

/** Renders `name` as its name and the view's JSON: enough for planners that compare texts. */
export class EchoTemplates implements Templates {
  readonly calls: { readonly name: string; readonly view: object }[] = [];
  render(name: string, view: object): string {
    this.calls.push({ name, view });
    return `${name}\n${JSON.stringify(view)}\n`;
  }
}

/** Records runtime API commands; answers from `answers` (by address) or fails for addresses in `down`. */
export class FakeHaproxy implements HaproxyRuntime {
  readonly calls: { readonly address: string; readonly line: string }[] = [];
  readonly down = new Set<string>();
  answer = '';
  command(address: string, line: string): Promise<string> {
    this.calls.push({ address, line });
    if (this.down.has(address)) {
      return Promise.reject(new Error(`HAProxy runtime API at ${address}: connect ECONNREFUSED`));
    }
    return Promise.resolve(this.answer);
  }
}

/** Answers HTTP probes from `statuses` (by URL); 0 (no answer) otherwise. */
export class FakeHttp implements Http {
  readonly statuses = new Map<string, number>();
  /** URLs where nothing listens (statusOrRefused answers 'refused'). */
  readonly refused = new Set<string>();
  status(url: string): Promise<number> {
    return Promise.resolve(this.statuses.get(url) ?? 0);
  }
  statusOrRefused(url: string): Promise<number | 'refused'> {
    return Promise.resolve(this.refused.has(url) ? 'refused' : (this.statuses.get(url) ?? 0));
  }
}

export interface Fakes {
  readonly shell: FakeShell;
  readonly pg: FakePostgres;
  readonly files: MemoryFiles;
  readonly archive: FakeArchive;
  readonly clock: FixedClock;
  readonly proc: FakeProcess;
  readonly haproxy: FakeHaproxy;
  readonly http: FakeHttp;
  readonly reporter: RecordingReporter;
  /** Questions the context was asked to confirm. */
  readonly questions: string[];
  readonly abort: AbortController;
}

export interface ContextOptions {
  readonly config?: Config;
  readonly options?: Partial<GlobalOptions>;
  readonly templates?: Templates;
  readonly proc?: FakeProcess;
  readonly files?: MemoryFiles;
  /** What confirm() answers. */
  readonly confirmAnswer?: boolean;
}

/** A context over fresh fakes (db1's config unless given). */
export function commandContext(options: ContextOptions = {}): { readonly ctx: CommandContext } & Fakes {
  const config = options.config ?? buildConfig();
  const fakes = {
    shell: new FakeShell(),
    pg: new FakePostgres(),
    files: options.files ?? new MemoryFiles(),
    archive: new FakeArchive(),
    clock: new FixedClock(),
    proc: options.proc ?? new FakeProcess(),
    haproxy: new FakeHaproxy(),
    http: new FakeHttp(),
    reporter: new RecordingReporter(),
    questions: [] as string[],
    abort: new AbortController(),
  };
  const ports: Ports = {
    shell: fakes.shell,
    pg: fakes.pg,
    files: fakes.files,
    archive: fakes.archive,
    templates: options.templates ?? new EchoTemplates(),
    clock: fakes.clock,
    proc: fakes.proc,
    haproxy: fakes.haproxy,
    http: fakes.http,
  };
  const ctx: CommandContext = {
    config,
    ports,
    reporter: fakes.reporter,
    options: {
      json: false,
      verbose: false,
      yes: true,
      dryRun: false,
      configPath: '/etc/chef-ha/chef-ha.json',
      ...options.options,
    },
    signal: fakes.abort.signal,
    confirm: (question) => {
      fakes.questions.push(question);
      return Promise.resolve(options.confirmAnswer ?? true);
    },
    secrets: createSecretStore(config, { files: fakes.files }),
  };
  return { ctx, ...fakes };
}
