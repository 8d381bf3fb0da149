// The client side of the cluster's mutual TLS (TLS 1.3 only): credentials that present this host's
// certificate and accept only a manager of our roots. Apart from tls.ts (the server side) so that
// the CLI loads neither node:tls nor grpc-js until it dials over TCP (cli/bundle.ts keeps both lazy).
import { createSecureContext, type PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { type CertRole, identityOf } from './identity.ts';

export const MIN_VERSION = 'TLSv1.3' as const;
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
