// gRPC credentials for the cluster's mutual TLS (TLS 1.3 only). Servers request a client
// certificate but let the handshake finish without one (Join has none yet): each call is then
// authorized by authz.ts from the verified peer certificate. Server credentials can be updated in
// place (renewal, root rotation) without closing the listener or its connections.
import { createSecureContext, type PeerCertificate, type SecureContext, type SecureContextOptions } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { type CertRole, identityOf, splitPem } from './identity.ts';
import { chainFor } from './rotation.ts';


export interface TlsMaterial {
  caPem: string;    // every root this cluster trusts (a PEM bundle during root rotation)
  certPem: string;
  keyPem: string;
}

const MIN_VERSION = 'TLSv1.3' as const;
/** What clients put in SNI (an IP is not a valid server name); the server name itself is not checked. */
export const TLS_SERVER_NAME = 'gantry-manager';
/**
 * What a joiner puts in SNI while it pins the root (node-certs.ts): it is answered with the chain
 * that leads to the roots trusted now. Everyone else also gets the cross-signed new root after a
 * rotation, so a client that still trusts only the old root completes the handshake and hears
 * from the manager why its certificate is refused, instead of a bare TLS error.
 */
export const TLS_JOIN_SERVER_NAME = 'gantry-join';
export const TLS_CHANNEL_OPTIONS: grpc.ChannelOptions = { 'grpc.ssl_target_name_override': TLS_SERVER_NAME };

const nl = (pem: string) => (pem.endsWith('\n') ? pem : `${pem}\n`);

function contextOptions(m: TlsMaterial): SecureContextOptions {
  // the chain includes the root(s) so a joiner can pin one by digest before trusting anything
  return { ca: m.caPem, cert: nl(m.certPem) + nl(m.caPem), key: m.keyPem, minVersion: MIN_VERSION };
}

/** For joiners: the cross-signed new root only while the old root is trusted (rotation.ts chainFor). */
function joinContextOptions(m: TlsMaterial): SecureContextOptions {
  return { ...contextOptions(m), cert: nl(chainFor(m.certPem, splitPem(m.caPem))) + nl(m.caPem) };
}

/** Server credentials whose key/cert/roots can be swapped while serving. */
export class ClusterServerCredentials extends grpc.ServerCredentials {
  private readonly join: { ctx: SecureContext | undefined };
  constructor(material?: TlsMaterial) {
    const join: { ctx: SecureContext | undefined } = { ctx: material ? createSecureContext(joinContextOptions(material)) : undefined };
    super(
      {
        requestCert: true,
        rejectUnauthorized: false,
        minVersion: MIN_VERSION,
        SNICallback: (name: string, cb: (err: Error | null, ctx?: SecureContext) => void) => cb(null, name === TLS_JOIN_SERVER_NAME ? join.ctx : undefined),
      } as ConstructorParameters<typeof grpc.ServerCredentials>[0],
      material ? contextOptions(material) : undefined,
    );
    this.join = join;
  }
  update(material: TlsMaterial): void {
    this.join.ctx = createSecureContext(joinContextOptions(material));
    this.updateSecureContextOptions(contextOptions(material));
  }
  _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}

/** The server must hold a manager certificate of our roots (the CA pin): its name is not an address. */
export function requireRole(role: CertRole) {
  return (_host: string, cert: PeerCertificate): Error | undefined => {
    const id = cert.raw ? identityOf(cert.raw) : undefined;
    if (!id || id.role !== role) return new Error(`the server's certificate is not a gantry ${role} certificate (${id ? `OU ${id.role}` : 'no gantry identity'})`);
    return undefined;
  };
}

/** Client credentials: verify the server against our roots and present our certificate (if any). */
export function clientCredentials(m: { caPem: string; certPem?: string; keyPem?: string }, serverRole: CertRole = 'manager'): grpc.ChannelCredentials {
  const ctx = createSecureContext({ ca: m.caPem, cert: m.certPem, key: m.keyPem, minVersion: MIN_VERSION });
  return grpc.credentials.createFromSecureContext(ctx, { checkServerIdentity: requireRole(serverRole) });
}
