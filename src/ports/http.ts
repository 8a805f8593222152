/** Plain HTTP probes (the health endpoints `status` shows). */

export interface Http {
  /** The HTTP status of GET url, or 0 when nothing answers within timeoutMs. Never throws. */
  status(url: string, timeoutMs: number): Promise<number>;
}

/** The real HTTP port (Node's fetch). */
export function createHttp(): Http {
  return {
    async status(url, timeoutMs) {
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
        await res.arrayBuffer();
        return res.status;
      } catch {
        return 0;
      }
    },
  };
}
