/** Time, behind a port so that waits are testable. */
import { setTimeout as delay } from 'node:timers/promises';

export interface Clock {
  now(): number;
  /** @throws AbortError when the signal fires. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The real clock. */
export function createClock(): Clock {
  return {
    now: () => Date.now(),
    sleep: async (ms, signal) => {
      await delay(ms, undefined, signal ? { signal } : undefined);
    },
  };
}
