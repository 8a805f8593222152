/** A clock that stands still until something sleeps: sleeping moves it forward by exactly the delay. */
import type { Clock } from '../../src/ports/index.js';

export const FIXED_NOW = Date.UTC(2026, 0, 15, 12, 3, 0);

export class FixedClock implements Clock {
  readonly sleeps: number[] = [];
  constructor(public current = FIXED_NOW) {}

  now(): number {
    return this.current;
  }

  /** Moves time on without sleeping. */
  advance(ms: number): void {
    this.current += ms;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) {
      return Promise.reject(new Error('The operation was aborted', { cause: signal.reason }));
    }
    this.sleeps.push(ms);
    this.current += ms;
    return Promise.resolve();
  }
}
