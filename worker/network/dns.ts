// The per-host DNS resolver containers use (nameserver = the host bridge's gateway): service
// names from the cluster state, everything else forwarded to the host's resolvers.
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import type { DnsAnswer } from './plan.ts';

export interface DnsQuestion {
  id: number;
  flags: number;
  name: string;       // lower case, no trailing dot
  qtype: number;
  qclass: number;
  questionEnd: number;
}

export function parseQuery(msg: Buffer): DnsQuestion | undefined {
  if (msg.length < 12) return undefined;
  const id = msg.readUInt16BE(0);
  const flags = msg.readUInt16BE(2);
  if (msg.readUInt16BE(4) !== 1) return undefined;
  let off = 12;
  const labels: string[] = [];
  for (;;) {
    if (off >= msg.length) return undefined;
    const len = msg[off];
    if (len === 0) {
      off++;
      break;
    }
    if (len > 63 || off + 1 + len > msg.length) return undefined;
    labels.push(msg.subarray(off + 1, off + 1 + len).toString('latin1'));
    off += 1 + len;
  }
  if (off + 4 > msg.length) return undefined;
  return { id, flags, name: labels.join('.').toLowerCase(), qtype: msg.readUInt16BE(off), qclass: msg.readUInt16BE(off + 2), questionEnd: off + 4 };
}

const TYPE_A = 1;
const RCODE_NXDOMAIN = 3;
const RCODE_SERVFAIL = 2;

/** A response to `q` (echoing its question) with A records, or an error code. */
export function buildResponse(query: Buffer, q: DnsQuestion, ips: string[], rcode = 0): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(q.id, 0);
  header.writeUInt16BE(0x8000 | (q.flags & 0x0100) | 0x0080 | 0x0400 | rcode, 2); // QR, RD copied, RA, AA
  header.writeUInt16BE(1, 4);
  const answers = q.qtype === TYPE_A || q.qtype === 255 ? ips : [];
  header.writeUInt16BE(answers.length, 6);
  const parts = [header, query.subarray(12, q.questionEnd)];
  for (const ip of answers) {
    const rr = Buffer.alloc(16);
    rr.writeUInt16BE(0xc00c, 0);
    rr.writeUInt16BE(TYPE_A, 2);
    rr.writeUInt16BE(1, 4);
    rr.writeUInt32BE(0, 6); // TTL 0: answers follow the store, no cache holds a stale one
    rr.writeUInt16BE(4, 10);
    ip.split('.').forEach((p, i) => {
      rr.writeUInt8(Number(p), 12 + i);
    });
    parts.push(rr);
  }
  return Buffer.concat(parts);
}

export function hostResolvers(file = '/etc/resolv.conf'): string[] {
  try {
    return readFileSync(file, 'utf8')
      .split('\n')
      .map((l) => /^\s*nameserver\s+(\d+\.\d+\.\d+\.\d+)\s*$/.exec(l)?.[1])
      .filter((x): x is string => !!x);
  } catch {
    return [];
  }
}

export class DnsServer {
  private sock: dgram.Socket | undefined;
  private readonly lookup: (src: string, name: string) => DnsAnswer | Promise<DnsAnswer>;
  private readonly upstream: string[];
  private readonly log: (m: string) => void;

  constructor(opts: { lookup: (src: string, name: string) => DnsAnswer | Promise<DnsAnswer>; upstream?: string[]; log?: (m: string) => void }) {
    this.lookup = opts.lookup;
    this.upstream = opts.upstream ?? hostResolvers();
    this.log = opts.log ?? (() => {});
  }

  async listen(addr: string, port = 53): Promise<void> {
    const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(port, addr, () => {
        sock.off('error', reject);
        resolve();
      });
    });
    sock.on('error', (err) => this.log(`dns: ${err.message}`));
    sock.on('message', (msg, rinfo) => void this.handle(msg, rinfo).catch((err: Error) => this.log(`dns: ${err.message}`)));
    this.sock = sock;
  }

  private async handle(msg: Buffer, rinfo: dgram.RemoteInfo): Promise<void> {
    const q = parseQuery(msg);
    if (!q) return;
    const a = await this.lookup(rinfo.address, q.name);
    let out: Buffer;
    if (a.kind === 'a') out = buildResponse(msg, q, a.ips);
    else if (a.kind === 'nxdomain') out = buildResponse(msg, q, [], q.qtype === TYPE_A ? RCODE_NXDOMAIN : 0);
    else out = (await this.forward(msg)) ?? buildResponse(msg, q, [], RCODE_SERVFAIL);
    this.sock?.send(out, rinfo.port, rinfo.address);
  }

  private async forward(msg: Buffer): Promise<Buffer | undefined> {
    for (const server of this.upstream) {
      const res = await new Promise<Buffer | undefined>((resolve) => {
        const s = dgram.createSocket('udp4');
        const timer = setTimeout(() => {
          s.close();
          resolve(undefined);
        }, 1500);
        s.on('message', (m) => {
          clearTimeout(timer);
          s.close();
          resolve(m);
        });
        s.on('error', () => {
          clearTimeout(timer);
          s.close();
          resolve(undefined);
        });
        s.send(msg, 53, server);
      });
      if (res) return res;
    }
    return undefined;
  }

  close(): void {
    this.sock?.close();
    this.sock = undefined;
  }
}
