// `gantry cluster client-cert` (an operator certificate for the CLI over TCP) and `gantry cluster ca`
// (the root CA's digest, lifetime of node certificates, revoked identities; `--rotate` replaces the
// root and follows every node to the new one). Thin: the CA is manager/ca.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { newKeyAndCsr } from '../../manager/ca/pki.ts';
import { bool, str, UsageError } from '../args.ts';
import type { Command } from '../command.ts';
import { tlsDir, unary } from '../connection.ts';
import { CaClient, type RootRotation } from '../../proto/gen/gantry/v1/ca.ts';
import { parseDuration } from '../units.ts';

async function writeAtomic(file: string, data: string, mode: number): Promise<void> {
  await writeFile(`${file}.tmp`, data, { mode });
  await rename(`${file}.tmp`, file);
}

const clientCert: Command = {
  path: ['cluster', 'client-cert'],
  summary: 'Issue an operator certificate for the CLI over TCP (GANTRY_HOST=manager:port)',
  usage: 'gantry cluster client-cert [--out DIR] [--name NAME]',
  flags: [
    { name: 'out', kind: 'string', help: 'where to write ca.pem, cert.pem and key.pem (default $GANTRY_TLS_DIR or ~/.gantry/tls)' },
    { name: 'name', kind: 'string', help: 'who it is for (goes into the certificate id)' },
  ],
  async run(args, ctx) {
    if (args.positionals.length > 0) throw new UsageError('cluster client-cert takes no arguments');
    const dir = str(args, 'out') ?? tlsDir(ctx.env);
    const { keyPem, csrPem } = await newKeyAndCsr(); // the key never leaves this host
    const conn = ctx.connect();
    const ca = conn.client(CaClient);
    const res = await unary(conn, ca.issueClientCert.bind(ca), { name: str(args, 'name') ?? (ctx.env.USER || 'cli'), csr: Buffer.from(csrPem) });
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeAtomic(path.join(dir, 'key.pem'), keyPem, 0o600);
    await writeAtomic(path.join(dir, 'cert.pem'), Buffer.from(res.certificate).toString(), 0o644);
    await writeAtomic(path.join(dir, 'ca.pem'), Buffer.from(res.rootCaCert).toString(), 0o644);
    ctx.out.write(`Operator certificate ${res.id} written to ${dir}\nUse it with: GANTRY_TLS_DIR=${dir} GANTRY_HOST=<manager>:<port> gantry node ls\n`);
    return 0;
  },
};

const OPERATOR_NOTE =
  'Operator certificates issued before the rotation (`gantry cluster client-cert`) stop working once the old root is dropped: issue new ones.\n';
const ETCD_NOTE =
  "etcd members read their trusted roots when they start: each manager now restarts its member, one at a time, once every manager is reachable; a new rotation waits for that (until then the members also still accept the old root).\n";

const short = (d: string) => `sha256:${d.slice(0, 16)}…`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function pendingLines(r: RootRotation): string {
  return r.nodes
    .filter((n) => !n.rotated)
    .map((n) => `  ${n.hostname || n.nodeId} (${n.nodeId}): ${n.why}\n`)
    .join('');
}

/** Starts a rotation and (unless detached) follows it to the end. */
async function rotate(args: Parameters<Command['run']>[0], ctx: Parameters<Command['run']>[1]): Promise<number> {
  const expiryText = str(args, 'cert-expiry');
  let certExpiryMs = 0;
  if (expiryText !== undefined) {
    const d = parseDuration(expiryText);
    if (!d.ok) throw new UsageError(`--cert-expiry: ${d.error}`);
    certExpiryMs = d.value;
  }
  const caCertFile = str(args, 'ca-cert');
  const caKeyFile = str(args, 'ca-key');
  if (Boolean(caCertFile) !== Boolean(caKeyFile)) throw new UsageError('--ca-cert and --ca-key go together');
  const caCert = caCertFile ? await readFile(caCertFile) : Buffer.alloc(0);
  const caKey = caKeyFile ? await readFile(caKeyFile) : Buffer.alloc(0);
  const conn = ctx.connect();
  const ca = conn.client(CaClient);
  const started = await unary(conn, ca.rotateRoot.bind(ca), { certExpiryMs, caCert, caKey });
  ctx.out.write(`Rotating the root CA: ${short(started.oldDigest)} -> ${short(started.newDigest)}\n`);
  if (bool(args, 'detach')) {
    ctx.out.write(`Every node gets a certificate from the new root; then the old root is dropped and the join tokens change.\nFollow it with \`gantry cluster ca\`.\n${OPERATOR_NOTE}`);
    return 0;
  }
  const patienceMs = 120_000; // without any node rotating
  let last = -1;
  let lastProgressAt = Date.now();
  for (;;) {
    const r = await unary(conn, ca.getRotation.bind(ca), {});
    if (!r.rotating) {
      if (r.newDigest !== started.newDigest) {
        ctx.err.write(`the cluster's root is now ${short(r.newDigest)}, not ${short(started.newDigest)}: another rotation replaced this one\n`);
        return 1;
      }
      ctx.out.write(`${r.total} of ${r.total} nodes rotated\nRoot CA rotated: every node holds a certificate from ${short(r.newDigest)}; the old root is no longer trusted.\n`);
      ctx.out.write(`Join tokens changed (they carry the new root's digest):\n  worker:  ${r.workerToken}\n  manager: ${r.managerToken}\n${OPERATOR_NOTE}${ETCD_NOTE}`);
      return 0;
    }
    if (r.rotated !== last) {
      ctx.out.write(`${r.rotated} of ${r.total} nodes rotated\n`);
      last = r.rotated;
      lastProgressAt = Date.now();
    }
    const pending = r.nodes.filter((n) => !n.rotated);
    const unreachable = pending.length > 0 && pending.every((n) => n.state === 'down' || n.state === 'disconnected');
    if (unreachable || Date.now() - lastProgressAt > patienceMs) {
      ctx.err.write(
        `the root CA rotation cannot finish now: ${pending.length} node(s) still hold a certificate from the old root:\n${pendingLines(r)}` +
          'The rotation stays under way (both roots trusted, tokens unchanged) and finishes once these nodes are rotated or removed; `gantry cluster ca` shows where it stands.\n',
      );
      return 1;
    }
    await sleep(500);
  }
}

const caInfo: Command = {
  path: ['cluster', 'ca'],
  summary: "Show the cluster's root CA (digest, node certificate lifetime, revoked identities), or rotate it",
  usage: 'gantry cluster ca [--rotate [-d] [--cert-expiry DURATION] [--ca-cert FILE --ca-key FILE]]',
  flags: [
    { name: 'format', kind: 'string', help: 'json for scripts' },
    { name: 'rotate', kind: 'bool', help: 'replace the root CA: every node gets a certificate from a new root, then the old root is dropped and the join tokens change' },
    { name: 'detach', short: 'd', kind: 'bool', help: 'with --rotate: return once the rotation started instead of following it' },
    { name: 'cert-expiry', kind: 'string', help: 'with --rotate: also set the node certificate lifetime (e.g. 2160h)' },
    { name: 'ca-cert', kind: 'string', help: 'with --rotate: the new root certificate (PEM, self-signed, ECDSA P-256) instead of a generated one' },
    { name: 'ca-key', kind: 'string', help: "with --rotate: the new root's key (PKCS#8 PEM)" },
  ],
  async run(args, ctx) {
    if (args.positionals.length > 0) throw new UsageError('cluster ca takes no arguments');
    if (bool(args, 'rotate')) return rotate(args, ctx);
    for (const f of ['detach', 'cert-expiry', 'ca-cert', 'ca-key']) {
      if (bool(args, f) || (f !== 'detach' && str(args, f) !== undefined)) throw new UsageError(`--${f} goes with --rotate`);
    }
    const conn = ctx.connect();
    const ca = conn.client(CaClient);
    const info = await unary(conn, ca.getCa.bind(ca), {});
    const rotation = info.rotatingTo ? await unary(conn, ca.getRotation.bind(ca), {}) : undefined;
    if (str(args, 'format') === 'json') {
      const rot = rotation && { to: info.rotatingTo, rotated: rotation.rotated, total: rotation.total, pending: rotation.nodes.filter((n) => !n.rotated).map((n) => ({ id: n.nodeId, hostname: n.hostname, why: n.why })) };
      ctx.out.write(`${JSON.stringify({ digest: info.digest, nodeCertLifetimeMs: info.nodeCertLifetimeMs, revoked: info.revoked, rootCaCert: Buffer.from(info.rootCaCert).toString(), rotation: rot ?? null }, null, 2)}\n`);
      return 0;
    }
    const hours = Math.round(info.nodeCertLifetimeMs / 3600_000);
    ctx.out.write(`Root CA digest:     sha256:${info.digest}\nNode certificates:  ${hours} h\nRevoked:            ${info.revoked.length === 0 ? '-' : info.revoked.join(', ')}\n`);
    if (rotation) {
      ctx.out.write(`Rotating to:        sha256:${info.rotatingTo} (${rotation.rotated} of ${rotation.total} nodes rotated)\n${pendingLines(rotation)}`);
    }
    return 0;
  },
};

export const commands: Command[] = [clientCert, caInfo];
