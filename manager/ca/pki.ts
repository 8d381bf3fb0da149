// The cluster CA's certificate work: the root CA (ECDSA P-256, self-signed), node keys and CSRs,
// issuance (CN = node id, OU = role, O = cluster id), identities read back from certificates.
// Pure functions over PEM strings; time comes in as `now`. Only this directory imports @peculiar/x509.
import 'reflect-metadata';
import { randomBytes, webcrypto } from 'node:crypto';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
import * as x509 from '@peculiar/x509';
import type { CertRole } from './identity.ts';

export { type CertRole, certDigest, type Identity, identityOf, renewalTime, signedBy, splitPem } from './identity.ts';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
export const DEFAULT_NODE_CERT_LIFETIME_MS = 90 * 24 * 3600_000; // 2160 h, like Swarm
export const ROOT_CA_LIFETIME_MS = 20 * 365 * 24 * 3600_000;
/** Issued certificates start a little in the past: clocks of hosts differ. */
const BACKDATE_MS = 5 * 60_000;

export interface RootCa {
  certPem: string;
  keyPem: string; // PKCS#8
}

function pem(label: string, der: ArrayBuffer): string {
  const b64 = Buffer.from(der).toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

function serial(): string {
  const b = randomBytes(16);
  b[0] &= 0x7f; // positive
  return b.toString('hex');
}

async function importKey(keyPem: string): Promise<CryptoKey> {
  const der = Buffer.from(keyPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  return webcrypto.subtle.importKey('pkcs8', der, ALG, false, ['sign']) as Promise<CryptoKey>;
}

async function newKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
}

export async function createRootCa(clusterId: string, now: number): Promise<RootCa> {
  const keys = await newKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=gantry-root-ca, O=${clusterId}`,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + ROOT_CA_LIFETIME_MS),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 1, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { certPem: `${cert.toString('pem')}\n`, keyPem: pem('PRIVATE KEY', pkcs8) };
}

/** A new key for this host and the request to certify it (the CSR's subject is ignored by the CA). */
export async function newKeyAndCsr(): Promise<{ keyPem: string; csrPem: string }> {
  const keys = await newKeys();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=gantry-node', keys, signingAlgorithm: ALG });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { keyPem: pem('PRIVATE KEY', pkcs8), csrPem: `${csr.toString('pem')}\n` };
}

export class CsrError extends Error {
  override name = 'CsrError';
}

/** Signs `csrPem` for `id` in `role`; the CA decides the subject, never the requester. */
export async function issue(ca: RootCa, csrPem: string, who: { id: string; role: CertRole; clusterId: string; ips?: string[] }, now: number, lifetimeMs: number): Promise<string> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err) {
    throw new CsrError(`the certificate request is not a PEM PKCS#10 request: ${(err as Error).message}`);
  }
  if (!(await csr.verify())) throw new CsrError('the certificate request is not signed by its own key');
  const caCert = new x509.X509Certificate(ca.certPem);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${who.id}, OU=${who.role}, O=${who.clusterId}`,
    issuer: caCert.subject,
    // backdated a little for clock skew, but never so much that renewal (50-80 % of the life) is due at once
    notBefore: new Date(now - Math.min(BACKDATE_MS, lifetimeMs / 10)),
    notAfter: new Date(now + lifetimeMs),
    publicKey: csr.publicKey,
    signingKey: await importKey(ca.keyPem),
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
      // the node's IPs: etcd members verify each other's certificates by them
      ...(who.ips?.length ? [new x509.SubjectAlternativeNameExtension([...new Set(who.ips)].filter(Boolean).map((value) => ({ type: 'ip' as const, value })))] : []),
    ],
  });
  return `${cert.toString('pem')}\n`;
}

