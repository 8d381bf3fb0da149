// DnsServer: answers service names from an (async) lookup and echoes the question.
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { test } from 'node:test';
import { DnsServer } from './dns.ts';

function query(id: number, name: string): Buffer {
  const labels = name.split('.').flatMap((l) => [Buffer.from([l.length]), Buffer.from(l)]);
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  h.writeUInt16BE(0x0100, 2);
  h.writeUInt16BE(1, 4);
  const tail = Buffer.from([0, 0, 1, 0, 1]); // root label, type A, class IN
  return Buffer.concat([h, ...labels, tail]);
}

async function listenSomewhere(server: DnsServer): Promise<number> {
  for (let i = 0; ; i++) {
    const port = 20000 + Math.floor(Math.random() * 20000);
    try {
      await server.listen('127.0.0.1', port);
      return port;
    } catch (err) {
      if (i >= 20) throw err;
    }
  }
}

test('dns: an answer that waits for the lookup (a restarted gantryd before its first state) still comes, with the A record', async (t) => {
  let release: () => void = () => {};
  const ready = new Promise<void>((r) => {
    release = r;
  });
  const server = new DnsServer({
    upstream: [],
    lookup: async (_src, name) => {
      await ready;
      return name === 'web' ? { kind: 'a', ips: ['10.0.0.2'] } : { kind: 'nxdomain' };
    },
  });
  t.after(() => server.close());
  const port = await listenSomewhere(server);
  const sock = dgram.createSocket('udp4');
  t.after(() => sock.close());
  const answer = new Promise<Buffer>((resolve) => sock.once('message', resolve));
  sock.send(query(7, 'web'), port, '127.0.0.1');
  await new Promise((r) => setTimeout(r, 50));
  release();
  const m = await answer;
  assert.equal(m.readUInt16BE(0), 7, 'the id echoed');
  assert.equal(m.readUInt16BE(2) & 0x0f, 0, 'rcode 0');
  assert.equal(m.readUInt16BE(6), 1, 'one answer');
  assert.deepEqual([...m.subarray(m.length - 4)], [10, 0, 0, 2]);
});
