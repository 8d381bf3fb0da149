// Reading certificates (node:crypto only, cheap to load: the CLI and every call's authorization
// use it): who a certificate names, its digest, whether a root signed it, when to renew it.
import { createHash, X509Certificate as NodeX509 } from 'node:crypto';

export type CertRole = 'manager' | 'worker' | 'operator';

export interface Identity {
  id: string;         // CN: node id or operator id
  role: CertRole;     // OU
  clusterId: string;  // O
  serial: string;
  notAfter: number;   // ms
  notBefore: number;
}

/** sha256 of a certificate's DER, hex: what join tokens carry to pin the root CA. */
export function certDigest(certPemOrDer: string | Buffer): string {
  const der = typeof certPemOrDer === 'string' ? new NodeX509(certPemOrDer).raw : certPemOrDer;
  return createHash('sha256').update(der).digest('hex');
}

function field(subject: string, key: string): string {
  for (const line of subject.split('\n')) {
    const i = line.indexOf('=');
    if (line.slice(0, i) === key) return line.slice(i + 1);
  }
  return '';
}

/** Who a certificate names (node crypto's parser: cheap enough for every call). */
export function identityOf(cert: string | Buffer | NodeX509): Identity | undefined {
  const c = cert instanceof NodeX509 ? cert : new NodeX509(cert);
  const role = field(c.subject, 'OU');
  if (role !== 'manager' && role !== 'worker' && role !== 'operator') return undefined;
  return {
    id: field(c.subject, 'CN'),
    role,
    clusterId: field(c.subject, 'O'),
    serial: c.serialNumber.toLowerCase(),
    notAfter: Date.parse(c.validTo),
    notBefore: Date.parse(c.validFrom),
  };
}

/** Whether `certPem` was signed by one of the roots in `rootsPem` (a PEM bundle). */
export function signedBy(certPem: string | Buffer, rootsPem: string): boolean {
  const c = new NodeX509(certPem);
  return splitPem(rootsPem).some((r) => {
    const root = new NodeX509(r);
    return c.checkIssued(root) && c.verify(root.publicKey);
  });
}

export function splitPem(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
}

/**
 * When a node renews: a random point between 50 % and 80 % of its certificate's lifetime, like
 * Swarm, so a cluster's nodes do not all renew at once. `random` in [0,1).
 */
export function renewalTime(notBefore: number, notAfter: number, random: number): number {
  const life = notAfter - notBefore;
  return notBefore + life * (0.5 + 0.3 * random);
}
