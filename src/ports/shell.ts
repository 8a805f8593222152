/**
 * Subprocesses through execa: argv arrays only, an explicit timeout, the command's cancel signal, and
 * redaction of secrets from everything that is logged or thrown (STYLE.md B7).
 */
import { execa, ExecaError } from 'execa';
import { ChefHaError, ExitCode } from '../core/errors.js';

export interface RunOptions {
  /** Run as this OS user (through runuser when chef-ha-ctl runs as root). */
  readonly user?: string | undefined;
  readonly env?: Readonly<Record<string, string>> | undefined;
  /** Text written to the child's stdin (SQL, secrets): never in argv. */
  readonly input?: string | Buffer | undefined;
  readonly timeoutMs: number;
  readonly cwd?: string | undefined;
  /** Called with each chunk of stderr as it arrives (progress of pg_basebackup). */
  readonly onStderr?: ((text: string) => void) | undefined;
  /** Inherit the terminal (pass-through commands). */
  readonly inherit?: boolean | undefined;
  /** Keep stdout as bytes (binary output such as a bundle over ssh) in `stdoutBytes`. */
  readonly binary?: boolean | undefined;
}

export interface RunResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly stdoutBytes?: Buffer;
  readonly durationMs: number;
}

/** A command that could not run or exited non-zero. */
export class CommandError extends ChefHaError {
  readonly exitCode = ExitCode.StepFailed;
  readonly command: string;
  readonly commandExitCode: number | undefined;
  readonly stderr: string;
  constructor(
    command: string,
    commandExitCode: number | undefined,
    stderr: string,
    why: string,
    options?: ErrorOptions,
  ) {
    const tail = stderr.trim().split('\n').slice(-20).join('\n');
    super(`${command}: ${why}${tail ? `\n${tail}` : ''}`, undefined, options);
    this.command = command;
    this.commandExitCode = commandExitCode;
    this.stderr = stderr;
  }
}

/** Quotes argv the way a POSIX shell reads it, for messages and ssh remote commands. */
export function shellQuote(argv: readonly string[]): string {
  return argv
    .map((a) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`))
    .join(' ');
}

export interface Shell {
  /**
   * Runs argv and returns its output; a non-zero exit is returned, not thrown.
   * @throws CommandError when the command cannot be started or times out.
   */
  run(argv: readonly [string, ...string[]], options: RunOptions): Promise<RunResult>;
  /** Whether an executable exists at this path. */
  isExecutable(path: string): Promise<boolean>;
}

export interface ShellDeps {
  readonly secrets: () => readonly string[];
  readonly log: (line: string) => void;
  readonly signal: AbortSignal;
  readonly isRoot: boolean;
  readonly currentUser: string;
}

/** Replaces every known secret in text by `***`. */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) {
    if (s.length >= 4) {
      out = out.split(s).join('***');
    }
  }
  return out;
}

/** The real shell port. */
export function createShell(deps: ShellDeps, access: (path: string) => Promise<boolean>): Shell {
  return {
    isExecutable: access,
    async run(argv, options) {
      let full: string[] = [...argv];
      if (options.user !== undefined && options.user !== deps.currentUser) {
        if (!deps.isRoot) {
          throw new CommandError(
            shellQuote(argv),
            undefined,
            '',
            `needs to run as ${options.user}: run chef-ha-ctl as root`,
          );
        }
        full = ['runuser', '-u', options.user, '--', ...argv];
      }
      const printable = redact(shellQuote(full), deps.secrets());
      const started = Date.now();
      try {
        const child = execa(full[0] ?? '', full.slice(1), {
          reject: false,
          timeout: options.timeoutMs,
          cancelSignal: deps.signal,
          env: { ...options.env },
          extendEnv: true,
          ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
          ...(options.inherit
            ? { stdin: 'inherit' as const }
            : options.input === undefined
              ? { stdin: 'ignore' as const }
              : { input: options.input }),
          stdout: options.inherit ? 'inherit' : 'pipe',
          stderr: options.inherit ? 'inherit' : 'pipe',
          stripFinalNewline: false,
          ...(options.binary ? { encoding: 'buffer' as const } : {}),
          killSignal: 'SIGTERM',
          forceKillAfterDelay: 2000,
        });
        if (options.onStderr && child.stderr) {
          const cb = options.onStderr;
          child.stderr.on('data', (chunk: Buffer) => {
            cb(redact(chunk.toString('utf8'), deps.secrets()));
          });
        }
        const result = await child;
        const durationMs = Date.now() - started;
        deps.log(`$ ${printable}  (exit ${result.exitCode ?? '?'}, ${(durationMs / 1000).toFixed(2)}s)`);
        if (result.timedOut) {
          throw new CommandError(
            printable,
            undefined,
            redact(String(result.stderr ?? ''), deps.secrets()),
            `timed out after ${options.timeoutMs} ms`,
          );
        }
        if (result.isCanceled) {
          throw new CommandError(printable, undefined, '', 'interrupted');
        }
        if (result.exitCode === undefined) {
          const why = result.failed ? (result.shortMessage ?? 'could not start') : 'ended without exit code';
          throw new CommandError(
            printable,
            undefined,
            redact(String(result.stderr ?? ''), deps.secrets()),
            redact(why, deps.secrets()),
          );
        }
        const errText =
          typeof result.stderr === 'string'
            ? result.stderr
            : Buffer.from(result.stderr ?? []).toString('utf8');
        if (options.binary) {
          return {
            exitCode: result.exitCode,
            stdout: '',
            stdoutBytes: Buffer.from(result.stdout as unknown as Uint8Array),
            stderr: redact(errText, deps.secrets()),
            durationMs,
          };
        }
        return {
          exitCode: result.exitCode,
          stdout: redact(String(result.stdout ?? ''), deps.secrets()),
          stderr: redact(errText, deps.secrets()),
          durationMs,
        };
      } catch (error) {
        if (error instanceof CommandError) {
          throw error;
        }
        const why = error instanceof ExecaError ? error.shortMessage : String(error);
        throw new CommandError(printable, undefined, '', redact(why, deps.secrets()), { cause: error });
      }
    },
  };
}
