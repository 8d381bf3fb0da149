// A host's own TLS material in <data-dir>/certs: key.pem (0600), cert.pem, ca.pem. Plus the
// join-time CA pin: before sending its token, a joiner reads the manager's chain over TLS and
// accepts it only if a root in it has the digest its token carries.
import { X509Certificate } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { connect, type DetailedPeerCertificate as PeerCertificate } from 'node:tls';
import { certDigest, type Identity, identityOf } from './identity.ts';
import { TLS_JOIN_SERVER_NAME, type TlsMaterial } from './tls.ts';

export function certsDir(dataDir: string): string {
  return path.join(dataDir, 'certs');
}

export async function loadNodeCerts(dataDir: string): Promise<TlsMaterial | undefined> {
  const dir = certsDir(dataDir);
  try {
    const [keyPem, certPem, caPem] = await Promise.all(['key.pem', 'cert.pem', 'ca.pem'].map((f) => readFile(path.join(dir, f), 'utf8')));
    return { keyPem, certPem, caPem };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function writeAtomic(file: string, data: string | Buffer, mode: number): Promise<void> {
  await writeFile(`${file}.tmp`, data, { mode });
  await chmod(`${file}.tmp`, mode);
  await rename(`${file}.tmp`, file);
}

export async function saveNodeCerts(dataDir: string, m: TlsMaterial): Promise<void> {
  const dir = certsDir(dataDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeAtomic(path.join(dir, 'key.pem'), m.keyPem, 0o600);
  await writeAtomic(path.join(dir, 'cert.pem'), m.certPem, 0o644);
  await writeAtomic(path.join(dir, 'ca.pem'), m.caPem, 0o644);
}

/** The cluster key of a manager (<data-dir>/certs/cluster.key, 0600). */
export async function loadClusterKey(dataDir: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path.join(certsDir(dataDir), 'cluster.key'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export async function saveClusterKey(dataDir: string, key: Buffer): Promise<void> {
  await mkdir(certsDir(dataDir), { recursive: true, mode: 0o700 });
  await writeAtomic(path.join(certsDir(dataDir), 'cluster.key'), key, 0o600);
}

export function identityOfMaterial(m: TlsMaterial): Identity | undefined {
  return identityOf(m.certPem);
}

export class CaPinError extends Error {
  override name = 'CaPinError';
}

/**
 * Connects to `addr` over TLS without trusting it yet, and returns the root CA (PEM) in its chain
 * whose digest is `digest` and which signed the server's certificate. Sends nothing but a handshake.
 */
export async function fetchPinnedRoot(addr: { host: string; port: number }, digest: string, timeoutMs = 10_000): Promise<string> {
  const chain = await new Promise<PeerCertificate>((resolve, reject) => {
    const s = connect({ host: addr.host, port: addr.port, servername: TLS_JOIN_SERVER_NAME, rejectUnauthorized: false, ALPNProtocols: ['h2'], minVersion: 'TLSv1.3' });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new CaPinError(`no TLS answer from ${addr.host}:${addr.port} within ${timeoutMs} ms`));
    }, timeoutMs);
    s.once('secureConnect', () => {
      clearTimeout(timer);
      const c = s.getPeerCertificate(true);
      s.destroy();
      resolve(c);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(new CaPinError(`cannot reach a manager at ${addr.host}:${addr.port} over TLS: ${err.message}`));
    });
  });
  if (!chain?.raw) throw new CaPinError(`the manager at ${addr.host}:${addr.port} presented no certificate`);
  // walk the chain as the server sent it: each link must sign the one below, up to the pinned root
  // (during a root rotation: certificate -> new root cross-signed by the old root -> old root)
  const seen: string[] = [];
  const links: X509Certificate[] = [];
  let c: PeerCertificate | undefined = chain;
  for (let i = 0; c?.raw && i < 6; i++) {
    const cert = new X509Certificate(c.raw);
    const below = links[links.length - 1];
    if (below && !(below.checkIssued(cert) && below.verify(cert.publicKey))) break;
    links.push(cert);
    const d = certDigest(c.raw);
    seen.push(d);
    if (d === digest) {
      if (!cert.ca || links.length < 2) {
        throw new CaPinError(`the certificate with the token's digest at ${addr.host}:${addr.port} did not sign the manager's certificate`);
      }
      return cert.toString();
    }
    c = c.issuerCertificate && c.issuerCertificate !== c ? c.issuerCertificate : undefined;
  }
  throw new CaPinError(
    `the manager at ${addr.host}:${addr.port} belongs to another CA (root digest ${seen[seen.length - 1]?.slice(0, 16)}…, the token says ${digest.slice(0, 16)}…): not sending the join token. Check the address and the token`,
  );
}
