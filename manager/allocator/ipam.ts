// IPv4 address management, pure: CIDR parsing, carving subnets from a pool, picking free addresses.
// Addresses are numbers (uint32) inside, dotted strings at the edges.

export interface Cidr {
  base: number;   // network address
  prefix: number;
}

export function parseIp(s: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return undefined;
  return ((parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]) >>> 0;
}

export function formatIp(n: number): string {
  return [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export function mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** "10.0.1.0/24" → {base, prefix}; host bits must be zero unless `loose` (then they are cleared). */
export function parseCidr(s: string, loose = false): Cidr | undefined {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(s.trim());
  if (!m) return undefined;
  const ip = parseIp(m[1]);
  const prefix = Number(m[2]);
  if (ip === undefined || prefix > 32) return undefined;
  const base = (ip & mask(prefix)) >>> 0;
  if (!loose && base !== ip) return undefined;
  return { base, prefix };
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.base)}/${c.prefix}`;
}

export function cidrSize(c: Cidr): number {
  return 2 ** (32 - c.prefix);
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  const p = Math.min(a.prefix, b.prefix);
  return ((a.base & mask(p)) >>> 0) === ((b.base & mask(p)) >>> 0);
}

export function contains(c: Cidr, ip: number): boolean {
  return ((ip & mask(c.prefix)) >>> 0) === c.base;
}

/** The addresses tasks and VIPs may take: all but the network, the gateway (.1) and broadcast. */
export function usableRange(c: Cidr): { first: number; last: number; size: number } {
  const n = cidrSize(c);
  if (n <= 4) return { first: c.base + 1, last: c.base + n - 2, size: Math.max(0, n - 2) };
  return { first: c.base + 2, last: c.base + n - 2, size: n - 3 };
}

/** The gateway address of a subnet (its first host), e.g. 10.0.1.1. */
export function gatewayOf(c: Cidr): number {
  return c.base + 1;
}

/** The first /`size` subnet of `pool` that overlaps none of `used`; undefined when the pool is full. */
export function carveSubnet(pool: Cidr, size: number, used: readonly Cidr[]): Cidr | undefined {
  const step = 2 ** (32 - size);
  const end = pool.base + cidrSize(pool);
  for (let base = pool.base; base + step <= end; base += step) {
    const cand = { base, prefix: size };
    if (!used.some((u) => overlaps(u, cand))) return cand;
  }
  return undefined;
}

/** The lowest free usable address of `c` (not in `used`); undefined when exhausted. */
export function pickAddress(c: Cidr, used: ReadonlySet<number>): number | undefined {
  const r = usableRange(c);
  for (let ip = r.first; ip <= r.last; ip++) if (!used.has(ip)) return ip;
  return undefined;
}

/** "10.0.1.5/24" → 10.0.1.5 as a number. */
export function ipOfCidr(s: string): number | undefined {
  return parseIp(s.split('/')[0]);
}
