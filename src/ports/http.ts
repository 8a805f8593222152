/** Plain HTTP probes (the health endpoints `status` shows). */

export interface Http {
  /** The HTTP status of GET url, or 0 when nothing answers within timeoutMs. Never throws. */
  status(url: string, timeoutMs: number): Promise<number>;
  /** As status, but 'refused' when nothing listens there (the connection was refused). Never throws. */
  statusOrRefused(url: string, timeoutMs: number): Promise<number | 'refused'>;
}

/** An address as the host part of a URL (IPv6 in brackets). */
export function urlHost(address: string): string {
  return address.includes(':') ? `[${address}]` : address;
}

/** The real HTTP port (Node's fetch). */
export function createHttp(): Http {
  const statusOrRefused = async (url: string, timeoutMs: number): Promise<number | 'refused'> => {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
      await res.arrayBuffer();
      return res.status;
    } catch (error) {
      const cause = error instanceof Error ? (error.cause as { code?: unknown } | undefined) : undefined;
      return cause?.code === 'ECONNREFUSED' ? 'refused' : 0;
    }
  };
  return {
    statusOrRefused,
    async status(url, timeoutMs) {
      const s = await statusOrRefused(url, timeoutMs);
      return s === 'refused' ? 0 : s;
    },
  };
}
