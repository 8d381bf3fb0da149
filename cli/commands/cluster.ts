// `gantry cluster client-cert` (an operator certificate for the CLI over TCP) and `gantry cluster ca`
// (the root CA's digest, lifetime of node certificates, revoked identities). Thin: the CA is manager/ca.
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { newKeyAndCsr } from '../../manager/ca/pki.ts';
import { str, UsageError } from '../args.ts';
import type { Command } from '../command.ts';
import { tlsDir, unary } from '../connection.ts';
import { CaClient } from '../../proto/gen/gantry/v1/ca.ts';

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

const caInfo: Command = {
  path: ['cluster', 'ca'],
  summary: "Show the cluster's root CA: digest, node certificate lifetime, revoked identities",
  usage: 'gantry cluster ca',
  flags: [{ name: 'format', kind: 'string', help: 'json for scripts' }],
  async run(args, ctx) {
    const conn = ctx.connect();
    const ca = conn.client(CaClient);
    const info = await unary(conn, ca.getCa.bind(ca), {});
    if (str(args, 'format') === 'json') {
      ctx.out.write(`${JSON.stringify({ digest: info.digest, nodeCertLifetimeMs: info.nodeCertLifetimeMs, revoked: info.revoked, rootCaCert: Buffer.from(info.rootCaCert).toString() }, null, 2)}\n`);
      return 0;
    }
    const hours = Math.round(info.nodeCertLifetimeMs / 3600_000);
    ctx.out.write(`Root CA digest:     sha256:${info.digest}\nNode certificates:  ${hours} h\nRevoked:            ${info.revoked.length === 0 ? '-' : info.revoked.join(', ')}\n`);
    return 0;
  },
};

export const commands: Command[] = [clientCert, caInfo];
