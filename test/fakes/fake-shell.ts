/** A Shell that records every argv and answers from a script; unscripted commands exit 0 silently. */
import type { RunOptions, RunResult, Shell } from '../../src/ports/index.js';

export interface ShellCall {
  readonly argv: readonly string[];
  readonly options: RunOptions;
}

type Matcher = string | RegExp | ((argv: readonly string[]) => boolean);
type Answer = Partial<RunResult> | ((argv: readonly string[], options: RunOptions) => Partial<RunResult>);

function matches(matcher: Matcher, argv: readonly string[]): boolean {
  if (typeof matcher === 'function') {
    return matcher(argv);
  }
  const line = argv.join(' ');
  return typeof matcher === 'string' ? line.includes(matcher) : matcher.test(line);
}

export class FakeShell implements Shell {
  readonly calls: ShellCall[] = [];
  readonly executables = new Set<string>();
  private readonly script: { readonly matcher: Matcher; readonly answer: Answer | Error }[] = [];

  /** Scripts the result of commands whose joined argv matches (first match wins). */
  on(matcher: Matcher, answer: Answer): this {
    this.script.push({ matcher, answer });
    return this;
  }

  /** Makes matching commands throw (as the real port does when a command cannot start). */
  throwOn(matcher: Matcher, error: Error): this {
    this.script.push({ matcher, answer: error });
    return this;
  }

  run(argv: readonly [string, ...string[]], options: RunOptions): Promise<RunResult> {
    this.calls.push({ argv: [...argv], options });
    const entry = this.script.find((s) => matches(s.matcher, argv));
    if (entry?.answer instanceof Error) {
      return Promise.reject(entry.answer);
    }
    const partial = typeof entry?.answer === 'function' ? entry.answer(argv, options) : entry?.answer;
    return Promise.resolve({ exitCode: 0, stdout: '', stderr: '', durationMs: 1, ...partial });
  }

  isExecutable(path: string): Promise<boolean> {
    return Promise.resolve(this.executables.has(path));
  }

  /** The argv of every call, joined by spaces. */
  lines(): string[] {
    return this.calls.map((c) => c.argv.join(' '));
  }
}
