// Who may call what on a manager's TCP port, decided per call from the verified peer certificate:
//   anyone   Dispatcher.Join (the token is the credential)
//   node     Dispatcher.Session/Promote/RenewCertificate: a worker or manager certificate of a node that exists
//   admin    Control, Ca: a manager certificate (of a node still meant to be a manager) or an operator certificate
// Revoked identities (Cluster.revoked) and removed nodes are refused on every new call and session.
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { type Cluster, type Node, NodeRole } from '../../proto/gen/gantry/v1/objects.ts';
import { type Identity, identityOf } from './identity.ts';

export type Access = 'anyone' | 'node' | 'admin';

export interface AuthzView {
  cluster(): Cluster | undefined;
  get(kind: 'nodes', id: string): Node | undefined;
}

export type Decision = { ok: true; identity: Identity | undefined } | { ok: false; code: grpc.status; message: string };

/** The pure decision: given who the certificate names (if the TLS layer verified one), may it call? */
export function authorize(access: Access, peer: { identity?: Identity; tlsError?: string }, view: AuthzView, now: number): Decision {
  if (access === 'anyone') return { ok: true, identity: peer.identity };
  const id = peer.identity;
  if (!id) {
    const why = peer.tlsError ? ` (${describeTlsError(peer.tlsError)})` : ' (none presented, or not one of this cluster\'s CA)';
    return { ok: false, code: grpc.status.UNAUTHENTICATED, message: `this call needs a certificate of this cluster${why}: join the cluster, or get an operator certificate with \`gantry cluster client-cert\`` };
  }
  const cluster = view.cluster();
  if (cluster && id.clusterId && id.clusterId !== cluster.id) {
    return { ok: false, code: grpc.status.UNAUTHENTICATED, message: `certificate of ${id.id} belongs to cluster ${id.clusterId}, not to this one (${cluster.id})` };
  }
  if (id.notAfter <= now) return { ok: false, code: grpc.status.UNAUTHENTICATED, message: `certificate of ${id.id} expired at ${new Date(id.notAfter).toISOString()}` };
  const revoked = cluster?.revoked.find((r) => r.id === id.id);
  if (revoked) {
    return { ok: false, code: grpc.status.PERMISSION_DENIED, message: `certificate of ${id.id} was revoked at ${new Date(revoked.revokedAt).toISOString()} (${revoked.reason || 'removed'}): it cannot be used again` };
  }
  if (id.role === 'operator') {
    if (access === 'admin') return { ok: true, identity: id };
    return { ok: false, code: grpc.status.PERMISSION_DENIED, message: `operator certificate ${id.id} may call the control API only, not the dispatcher` };
  }
  const node = view.get('nodes', id.id);
  if (!node) {
    return { ok: false, code: grpc.status.PERMISSION_DENIED, message: `node ${id.id} is not part of this cluster (removed?): its certificate is revoked; run 'gantry leave --force' on it and join again` };
  }
  if (access === 'node') return { ok: true, identity: id };
  const manager = id.role === 'manager' && (node.spec?.desiredRole === NodeRole.NODE_ROLE_MANAGER || node.role === NodeRole.NODE_ROLE_MANAGER);
  if (!manager) {
    return { ok: false, code: grpc.status.PERMISSION_DENIED, message: `node ${id.id} holds a worker certificate: workers may not call the control API (use a manager, or an operator certificate from \`gantry cluster client-cert\`)` };
  }
  return { ok: true, identity: id };
}

function describeTlsError(code: string): string {
  switch (code) {
    case 'CERT_HAS_EXPIRED':
      return 'its certificate has expired';
    case 'CERT_NOT_YET_VALID':
      return 'its certificate is not valid yet';
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
      return 'its certificate is signed by another CA than this cluster\'s; if the cluster\'s root CA was rotated (`gantry cluster ca --rotate`), certificates from the old root no longer work: get a new one';
    default:
      return `its certificate was not accepted: ${code}`;
  }
}

type AnyCall = { getAuthContext?: () => { sslPeerCertificate?: { raw?: Buffer } } | null };

/** The TLS socket under a grpc-js server call (best effort: used only to explain a refusal). */
function socketOf(call: unknown): TLSSocket | undefined {
  let c = call as Record<string, unknown> | undefined;
  for (let i = 0; i < 6 && c; i++) {
    const stream = c.stream as { session?: { socket?: TLSSocket } } | undefined;
    if (stream?.session?.socket) return stream.session.socket;
    c = (c.call ?? c.nextCall) as Record<string, unknown> | undefined;
  }
  return undefined;
}

const identities = new Map<string, Identity | undefined>();

/** The verified peer certificate's identity (undefined when none was verified), and the TLS error if any. */
export function peerOf(call: unknown): { identity?: Identity; tlsError?: string } {
  const raw = (call as AnyCall).getAuthContext?.()?.sslPeerCertificate?.raw;
  if (!raw) {
    const s = socketOf(call);
    const err = s?.authorizationError;
    return { tlsError: err ? String((err as { code?: string }).code ?? err) : s?.getPeerCertificate?.()?.raw ? 'UNVERIFIED' : undefined };
  }
  const key = raw.toString('base64');
  if (!identities.has(key)) {
    if (identities.size > 10_000) identities.clear();
    identities.set(key, identityOf(new X509Certificate(raw)));
  }
  return { identity: identities.get(key) };
}

/** The verified peer certificate (DER) of a call, if TLS verified one. */
export function peerCertOf(call: unknown): Buffer | undefined {
  return (call as AnyCall).getAuthContext?.()?.sslPeerCertificate?.raw;
}

/** The node id a call's certificate names (for handlers behind a 'node' guard). */
export function callerId(call: unknown): string | undefined {
  return peerOf(call).identity?.id;
}

/**
 * Wraps a service implementation so each method is authorized first. `policy` names each method's
 * access (methods missing from it are refused: new methods must choose).
 */
export function guard(
  impl: grpc.UntypedServiceImplementation,
  policy: Record<string, Access>,
  deps: { view: () => AuthzView; now: () => number; log?: (m: string) => void },
): grpc.UntypedServiceImplementation {
  const out: grpc.UntypedServiceImplementation = {};
  // a refused node retries every second or two: say so once per refusal per 30 s
  const lastLogged = new Map<string, number>();
  const logRefusal = (m: string) => {
    const now = deps.now();
    if ((lastLogged.get(m) ?? -Infinity) > now - 30_000) return;
    if (lastLogged.size > 1000) lastLogged.clear();
    lastLogged.set(m, now);
    deps.log?.(m);
  };
  for (const [name, fn] of Object.entries(impl)) {
    const handler = fn as (...args: unknown[]) => void;
    out[name] = (call: unknown, cb?: unknown) => {
      const access = policy[name];
      const d: Decision = access
        ? authorize(access, peerOf(call), deps.view(), deps.now())
        : { ok: false, code: grpc.status.PERMISSION_DENIED, message: `${name} is not served on this port` };
      if (d.ok) return cb === undefined ? handler(call) : handler(call, cb);
      logRefusal(`refused ${name}: ${d.message}`);
      const err = Object.assign(new Error(d.message), { code: d.code, details: d.message, metadata: new grpc.Metadata() });
      if (typeof cb === 'function') return (cb as (e: unknown) => void)(err);
      (call as { emit(e: string, v: unknown): void }).emit('error', err);
    };
  }
  return out;
}
