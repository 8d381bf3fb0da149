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

/**
 * A new self-signed root. `generation` > 0 (a rotated root) gets its own name, so the old and the
 * new root (and the cross-signed copy of the new one) are never confused by name.
 */
export async function createRootCa(clusterId: string, now: number, generation = 0): Promise<RootCa> {
  const keys = await newKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=gantry-root-ca${generation > 0 ? `-${generation}` : ''}, O=${clusterId}`,
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


/**
 * The new root certified by the old one (same subject, same key, issuer = the old root), valid no
 * longer than the old root: a certificate from the new root, sent with this one, chains to the old
 * root too, so nodes that trust only the old root accept it during a rotation.
 */
export async function crossSign(oldRoot: RootCa, newRootPem: string, now: number): Promise<string> {
  const oldCert = new x509.X509Certificate(oldRoot.certPem);
  const newCert = new x509.X509Certificate(newRootPem);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: newCert.subject,
    issuer: oldCert.subject,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(Math.min(oldCert.notAfter.getTime(), newCert.notAfter.getTime())),
    publicKey: newCert.publicKey,
    signingKey: await importKey(oldRoot.keyPem),
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(await newCert.publicKey.export(ALG, ['verify'])),
      await x509.AuthorityKeyIdentifierExtension.create(oldCert),
    ],
  });
  return `${cert.toString('pem')}\n`;
}

export class RootCaInputError extends Error {
  override name = 'RootCaInputError';
}

/** An operator's own root (`--ca-cert/--ca-key`): a self-signed CA certificate, ECDSA P-256, whose key it is. */
export async function importRootCa(certPem: string, keyPem: string, now: number): Promise<RootCa> {
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(certPem);
  } catch (err) {
    throw new RootCaInputError(`--ca-cert is not a PEM certificate: ${(err as Error).message}`);
  }
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  if (!bc?.ca) throw new RootCaInputError('--ca-cert is not a CA certificate (basic constraints CA:TRUE missing)');
  if (!(await cert.isSelfSigned())) throw new RootCaInputError('--ca-cert must be a self-signed root (intermediates are not supported)');
  if (cert.notAfter.getTime() <= now) throw new RootCaInputError(`--ca-cert expired at ${cert.notAfter.toISOString()}`);
  let key: CryptoKey;
  try {
    key = await importKey(keyPem);
  } catch (err) {
    throw new RootCaInputError(`--ca-key is not a PKCS#8 PEM ECDSA P-256 private key: ${(err as Error).message}`);
  }
  // the key must be the certificate's: sign and verify one message
  const msg = randomBytes(32);
  const sig = await webcrypto.subtle.sign(ALG, key, msg);
  const pub = await cert.publicKey.export(ALG, ['verify']).catch(() => undefined);
  if (!pub || !(await webcrypto.subtle.verify(ALG, pub as CryptoKey, sig, msg))) throw new RootCaInputError('--ca-key is not the key of --ca-cert');
  return { certPem: `${cert.toString('pem')}\n`, keyPem: keyPem.endsWith('\n') ? keyPem : `${keyPem}\n` };
}
