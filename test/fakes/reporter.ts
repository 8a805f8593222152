/** A Reporter that records every call, for assertions on what a command told the operator. */
import type { Plan, Step } from '../../src/core/plan.js';
import type { Reporter } from '../../src/core/reporter.js';

export type ReporterCall =
  | { readonly method: 'showPlan'; readonly plan: Plan; readonly dryRun: boolean }
  | { readonly method: 'stepStart'; readonly index: number; readonly total: number; readonly id: string }
  | {
      readonly method: 'stepDone';
      readonly index: number;
      readonly total: number;
      readonly id: string;
      readonly note: string | undefined;
    }
  | {
      readonly method: 'stepSkipped';
      readonly index: number;
      readonly total: number;
      readonly id: string;
      readonly reason: string;
    }
  | { readonly method: 'progress'; readonly text: string }
  | { readonly method: 'info'; readonly text: string }
  | { readonly method: 'warn'; readonly text: string }
  | { readonly method: 'log'; readonly text: string }
  | { readonly method: 'result'; readonly text: string; readonly data: unknown }
  | { readonly method: 'raw'; readonly data: Buffer }
  | { readonly method: 'error'; readonly message: string; readonly hint: string | undefined }
  | { readonly method: 'event'; readonly text: string; readonly data: Readonly<Record<string, unknown>> };

export class RecordingReporter implements Reporter {
  readonly calls: ReporterCall[] = [];

  showPlan(plan: Plan, dryRun: boolean): void {
    this.calls.push({ method: 'showPlan', plan, dryRun });
  }
  stepStart(index: number, total: number, step: Step): void {
    this.calls.push({ method: 'stepStart', index, total, id: step.id });
  }
  stepDone(index: number, total: number, step: Step, _durationMs: number, note?: string): void {
    this.calls.push({ method: 'stepDone', index, total, id: step.id, note });
  }
  stepSkipped(index: number, total: number, step: Step, reason: string): void {
    this.calls.push({ method: 'stepSkipped', index, total, id: step.id, reason });
  }
  progress(text: string): void {
    this.calls.push({ method: 'progress', text });
  }
  info(text: string): void {
    this.calls.push({ method: 'info', text });
  }
  warn(text: string): void {
    this.calls.push({ method: 'warn', text });
  }
  log(text: string): void {
    this.calls.push({ method: 'log', text });
  }
  result(text: string, data: unknown): void {
    this.calls.push({ method: 'result', text, data });
  }
  raw(data: Buffer): void {
    this.calls.push({ method: 'raw', data });
  }
  event(text: string, data: Readonly<Record<string, unknown>>): void {
    this.calls.push({ method: 'event', text, data });
  }
  error(message: string, hint?: string): void {
    this.calls.push({ method: 'error', message, hint });
  }

  /** The calls of one method, narrowed. */
  of<M extends ReporterCall['method']>(method: M): Extract<ReporterCall, { method: M }>[] {
    return this.calls.filter((c): c is Extract<ReporterCall, { method: M }> => c.method === method);
  }
}
