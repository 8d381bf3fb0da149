// Address helpers for gantryd's flags: IP:PORT parsing and the default advertise address.
import os from 'node:os';

/** The port a manager listens on when --listen-addr gives none (Swarm uses 2377; we are not Swarm). */
export const DEFAULT_PORT = 4242;

export function splitHostPort(addr: string, defaultPort: number): { host: string; port: number } {
  const m = /^\[?([^\]]*?)\]?(?::(\d+))?$/.exec(addr.trim());
  if (!m || !m[1]) throw new Error(`address "${addr}" is not of the form IP[:PORT]`);
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`address "${addr}": port must be 0-65535`);
  return { host: m[1], port };
}

/** The first non-internal IPv4 address of this host (what peers on its network can reach). */
export function defaultAdvertiseIp(): string {
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}
