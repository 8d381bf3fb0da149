// gRPC credentials for the cluster's mutual TLS (TLS 1.3 only). Servers request a client
// certificate but let the handshake finish without one (Join has none yet): each call is then
// authorized by authz.ts from the verified peer certificate. Server credentials can be updated in
// place (renewal, root rotation) without closing the listener or its connections.
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { splitPem } from './identity.ts';
import { chainFor } from './rotation.ts';
import { MIN_VERSION, TLS_JOIN_SERVER_NAME } from './tls-client.ts';

export { clientCredentials, requireRole, TLS_CHANNEL_OPTIONS, TLS_JOIN_SERVER_NAME, TLS_SERVER_NAME } from './tls-client.ts';

export interface TlsMaterial {
  caPem: string;    // every root this cluster trusts (a PEM bundle during root rotation)
  certPem: string;
  keyPem: string;
}

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
