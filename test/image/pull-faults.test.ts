// Pull against a fake registry that misbehaves: wrong digest, truncated and stalled bodies, 5xx then success,
// slow links, redirects to another host. Each checks the message and that the store holds nothing broken.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import * as zlib from 'node:zlib';
import { ImageStore, type PullProgress } from '../../worker/image/store.ts';
import { busyboxRootfsTar, makeTar } from '../helpers/busybox.ts';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

interface Image {
  manifest: Buffer;
  config: Buffer;
  layers: Buffer[];
  blobs: Map<string, Buffer>;
}

function image(layersTar: Buffer[], opts: { badDiffId?: boolean; plain?: boolean } = {}): Image {
  const layers = layersTar.map((t) => (opts.plain ? t : zlib.gzipSync(t, { level: 1 })));
  const diffIds = layersTar.map(sha);
  if (opts.badDiffId) diffIds[0] = sha(Buffer.from('not the layer'));
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: diffIds } }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length },
    layers: layers.map((l) => ({ mediaType: opts.plain ? 'application/vnd.oci.image.layer.v1.tar' : 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha(l), size: l.length })),
  }));
  const blobs = new Map<string, Buffer>([[sha(config), config], ...layers.map((l) => [sha(l), l] as [string, Buffer])]);
  return { manifest, config, layers, blobs };
}

type Fault = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer, attempt: number) => boolean;

interface Fake {
  addr: string;
  requests: Array<{ method: string; url: string; range?: string; auth?: string; host: string }>;
  faults: Map<string, Fault>;
  close(): Promise<void>;
}

async function listen(handler: http.RequestListener): Promise<http.Server> {
  const s = http.createServer(handler);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return s;
}

async function fakeRegistry(img: Image, t: { after(fn: () => Promise<void>): void }): Promise<Fake> {
  const requests: Fake['requests'] = [];
  const faults = new Map<string, Fault>();
  const attempts = new Map<string, number>();
  const serveBlob = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => {
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (range) {
      const start = Number(range[1]);
      res.writeHead(206, { 'content-length': body.length - start, 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` });
      res.end(body.subarray(start));
    } else {
      res.writeHead(200, { 'content-length': body.length, 'content-type': 'application/octet-stream' });
      res.end(body);
    }
  };
  const server = await listen((req, res) => {
    const url = req.url ?? '';
    requests.push({ method: req.method ?? '', url, range: req.headers.range, auth: req.headers.authorization, host: req.headers.host ?? '' });
    const key = url.replace(/\?.*/, '');
    const n = (attempts.get(key) ?? 0) + 1;
    attempts.set(key, n);
    if (url === '/v2/') {
      res.writeHead(200).end('{}');
      return;
    }
    let m = /^\/v2\/(.+)\/manifests\/(.+)$/.exec(key);
    if (m) {
      const f = faults.get('manifest');
      if (f?.(req, res, img.manifest, n)) return;
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'docker-content-digest': sha(img.manifest), 'content-length': img.manifest.length });
      res.end(req.method === 'HEAD' ? undefined : img.manifest);
      return;
    }
    m = /^\/v2\/(.+)\/blobs\/(sha256:[a-f0-9]+)$/.exec(key);
    if (m) {
      const body = img.blobs.get(m[2]);
      if (!body) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}');
        return;
      }
      const f = faults.get(m[2]);
      if (f?.(req, res, body, n)) return;
      serveBlob(req, res, body);
      return;
    }
    res.writeHead(404).end();
  });
  const addr = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  const fake: Fake = {
    addr,
    requests,
    faults,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
  t.after(() => fake.close());
  return fake;
}

async function freshStore(t: { after(fn: () => void): void }): Promise<ImageStore> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-faults-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return ImageStore.open(path.join(dir, 'images'));
}

/** Nothing that looks complete but is not: no image, no committed layer blob or snapshot, no temp snapshot. */
async function assertNothingBroken(store: ImageStore, img: Image, opts: { partialAllowed?: boolean } = {}) {
  assert.deepEqual((await store.list()).length, 0, 'no image recorded');
  for (const l of img.layers) assert.equal(await store.content.stat(sha(l)), undefined, 'no layer blob committed');
  assert.deepEqual(await store.snapshots.list(), [], 'no snapshot committed');
  assert.deepEqual(fs.readdirSync(store.snapshots.root).filter((n) => n.startsWith('tmp-')), [], 'no temp snapshot left');
  if (!opts.partialAllowed) assert.deepEqual(fs.readdirSync(path.join(store.root, 'ingest')), [], 'no partial download left');
}

const bigLayer = () => busyboxRootfsTar();
const fast = { backoffMs: 1, sleep: async () => {} };

test('pull faults: a layer whose bytes do not match its digest is refused and nothing is kept', async (t) => {
  const img = image([bigLayer()]);
  const fake = await fakeRegistry(img, t);
  const layer = sha(img.layers[0]);
  fake.faults.set(layer, (_req, res, body) => {
    const bad = Buffer.from(body);
    bad[bad.length - 20] ^= 0xff; // still valid length; gzip trailer/CRC or digest will not match
    res.writeHead(200, { 'content-length': bad.length }).end(bad);
    return true;
  });
  const store = await freshStore(t);
  await assert.rejects(store.pull(`${fake.addr}/x/y:1`, fast), (e: Error) => {
    assert.match(e.message, new RegExp(`^pull ${fake.addr}/x/y:1: layer ${layer.slice(7, 19)}: `));
    assert.match(e.message, /got digest sha256:[a-f0-9]{64}; discarded|not valid gzip data|unexpected end|incorrect/);
    return true;
  });
  await assertNothingBroken(store, img);
});

test('pull faults: a valid tar that is not the blob the manifest names is refused by digest', async (t) => {
  const img = image([makeTar([{ name: 'f', type: 'file', data: 'original' }])], { plain: true });
  const fake = await fakeRegistry(img, t);
  const layer = sha(img.layers[0]);
  fake.faults.set(layer, (_req, res, body) => {
    const evil = Buffer.from(body.toString('latin1').replace('original', 'tampered'), 'latin1');
    res.writeHead(200, { 'content-length': evil.length }).end(evil);
    return true;
  });
  const store = await freshStore(t);
  await assert.rejects(store.pull(`${fake.addr}/x/y:1`, fast), new RegExp(`layer ${layer.slice(7, 19)}: blob ${layer}: got digest sha256:[a-f0-9]{64}; discarded`));
  await assertNothingBroken(store, img);
});

test('pull faults: a layer with the right digest but content that differs from the config diff id is refused', async (t) => {
  const img = image([makeTar([{ name: 'f', type: 'file', data: 'x' }])], { badDiffId: true });
  const fake = await fakeRegistry(img, t);
  const store = await freshStore(t);
  await assert.rejects(store.pull(`${fake.addr}/x/y:1`, fast), /layer content hashes to sha256:[a-f0-9]{64} but the image config says sha256:/);
  assert.deepEqual(await store.snapshots.list(), []);
  assert.equal((await store.list()).length, 0);
});

test('pull faults: 500 and 503 answers are retried with backoff until the registry recovers', async (t) => {
  const img = image([bigLayer(), makeTar([{ name: 'g', type: 'file', data: 'second' }])]);
  const fake = await fakeRegistry(img, t);
  const failFirst = (status: number) => (_q: http.IncomingMessage, res: http.ServerResponse, _b: Buffer, n: number) => {
    if (n > 2) return false;
    res.writeHead(status).end('boom');
    return true;
  };
  fake.faults.set('manifest', failFirst(500));
  fake.faults.set(sha(img.layers[0]), failFirst(503));
  const store = await freshStore(t);
  const events: PullProgress[] = [];
  const delays: number[] = [];
  const info = await store.pull(`${fake.addr}/x/y:1`, { backoffMs: 10, sleep: async (ms) => void delays.push(ms), onProgress: (p) => events.push(p) });
  assert.equal(info.layers.length, 2);
  assert.ok(events.some((e) => e.status === 'retrying' && /answered 500/.test(e.message ?? '')));
  assert.ok(delays.length >= 4);
  assert.ok(delays.includes(20), `backoff doubles: ${delays}`);
});

test('pull faults: a body cut off halfway is resumed with a Range request from where it stopped', async (t) => {
  const img = image([bigLayer()]);
  const fake = await fakeRegistry(img, t);
  const layer = sha(img.layers[0]);
  fake.faults.set(layer, (_q, res, body, n) => {
    if (n > 1) return false;
    res.writeHead(200, { 'content-length': body.length });
    res.write(body.subarray(0, Math.floor(body.length / 2)), () => res.socket?.destroy());
    return true;
  });
  const store = await freshStore(t);
  const info = await store.pull(`${fake.addr}/x/y:1`, fast);
  assert.equal(info.layers[0].digest, layer);
  const ranged = fake.requests.filter((r) => r.url.includes(layer) && r.range);
  assert.equal(ranged.length, 1);
  const from = Number(/bytes=(\d+)-/.exec(ranged[0].range ?? '')?.[1]);
  assert.ok(from > 0 && from <= Math.floor(img.layers[0].length / 2), `resumed from ${from}`);
  assert.ok(fs.existsSync(path.join((await store.snapshotDirs(info))[0], 'bin', 'busybox')));
});

test('pull faults: a registry that always cuts off fails the pull; the next pull resumes the partial download', async (t) => {
  const img = image([bigLayer()]);
  const fake = await fakeRegistry(img, t);
  const layer = sha(img.layers[0]);
  const third = Math.floor(img.layers[0].length / 3);
  fake.faults.set(layer, (req, res, body) => {
    const start = Number(/bytes=(\d+)-/.exec(req.headers.range ?? '')?.[1] ?? 0);
    if (start > 0) {
      res.socket?.destroy();
      return true;
    }
    res.writeHead(200, { 'content-length': body.length });
    res.write(body.subarray(0, third), () => res.socket?.destroy());
    return true;
  });
  const store = await freshStore(t);
  await assert.rejects(store.pull(`${fake.addr}/x/y:1`, { ...fast, attempts: 2 }), (e: Error) => {
    assert.match(e.message, new RegExp(`layer ${layer.slice(7, 19)}: .*(socket hang up|closed early|aborted|ECONNRESET)`));
    return true;
  });
  await assertNothingBroken(store, img, { partialAllowed: true });
  const kept = fs.statSync(path.join(store.root, 'ingest', layer.slice(7))).size;
  assert.ok(kept > 0 && kept <= third, `the partial download is kept for a resume (${kept} bytes)`);
  fake.faults.delete(layer);
  fake.requests.length = 0;
  const info = await store.pull(`${fake.addr}/x/y:1`, fast);
  assert.equal(info.layers[0].digest, layer);
  assert.deepEqual(fake.requests.filter((r) => r.url.includes(layer)).map((r) => r.range), [`bytes=${kept}-`]);
  assert.deepEqual(fs.readdirSync(path.join(store.root, 'ingest')), []);
});

test('pull faults: a slow link completes; a stalled one is dropped after the idle timeout and resumed', async (t) => {
  const img = image([bigLayer()]);
  const fake = await fakeRegistry(img, t);
  const layer = sha(img.layers[0]);
  let stalled = false;
  fake.faults.set(layer, (req, res, body) => {
    if (req.headers.range) return false;
    res.writeHead(200, { 'content-length': body.length });
    let off = 0;
    const tick = () => {
      if (res.destroyed) return;
      if (off >= body.length / 2 && !stalled) {
        stalled = true; // send nothing more on this connection
        return;
      }
      res.write(body.subarray(off, off + 64 * 1024));
      off += 64 * 1024;
      setTimeout(tick, 20);
    };
    tick();
    return true;
  });
  const store = await freshStore(t);
  const events: PullProgress[] = [];
  const info = await store.pull(`${fake.addr}/x/y:1`, { ...fast, idleTimeoutMs: 1000, onProgress: (p) => events.push(p) });
  assert.equal(info.layers[0].digest, layer);
  assert.ok(stalled);
  assert.ok(events.some((e) => e.status === 'retrying' && /idle for 1000 ms/.test(e.message ?? '')), 'the stall was noticed');
  assert.equal(fake.requests.filter((r) => r.url.includes(layer) && r.range).length, 1);
});

test('pull faults: blob redirects to another host are followed without sending credentials there', async (t) => {
  const img = image([bigLayer()]);
  const fake = await fakeRegistry(img, t);
  const cdnSeen: Array<{ url: string; auth?: string }> = [];
  const cdn = await listen((req, res) => {
    cdnSeen.push({ url: req.url ?? '', auth: req.headers.authorization });
    const d = (req.url ?? '').slice(1);
    const body = img.blobs.get(d);
    if (!body) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  t.after(() => new Promise<void>((r) => cdn.close(() => r())));
  const cdnAddr = `127.0.0.1:${(cdn.address() as AddressInfo).port}`;
  for (const d of img.blobs.keys()) {
    fake.faults.set(d, (_q, res) => {
      res.writeHead(307, { location: `http://${cdnAddr}/${d}` }).end();
      return true;
    });
  }
  const store = await freshStore(t);
  const info = await store.pull(`${fake.addr}/x/y:1`, { ...fast, credentials: { username: 'u', password: 'p' } });
  assert.equal(info.layers.length, 1);
  assert.equal(cdnSeen.length, 2);
  assert.ok(cdnSeen.every((r) => r.auth === undefined));
});

test('pull faults: a prune while a pull is in flight keeps what the pull already fetched', async (t) => {
  const img = image([bigLayer(), makeTar([{ name: 'late', type: 'file', data: 'late layer' }])]);
  const fake = await fakeRegistry(img, t);
  let releaseLate!: () => void;
  const late = new Promise<void>((r) => (releaseLate = r));
  fake.faults.set(sha(img.layers[1]), (req, res, body) => {
    late.then(() => {
      if (!req.destroyed) res.writeHead(200, { 'content-length': body.length }).end(body);
    });
    return true;
  });
  const store = await freshStore(t);
  let firstDone!: () => void;
  const first = new Promise<void>((r) => (firstDone = r));
  const pulling = store.pull(`${fake.addr}/x/y:1`, {
    ...fast,
    onProgress: (p) => {
      if (p.id === sha(img.layers[0]) && p.status === 'done') firstDone();
    },
  });
  await first;
  const pruned = await store.prune();
  assert.equal(pruned.blobs, 0);
  assert.equal(pruned.snapshots, 0);
  releaseLate();
  const info = await pulling;
  assert.equal((await store.snapshotDirs(info)).length, 2);
  for (const l of info.layers) assert.ok(await store.content.stat(l.digest));
});
