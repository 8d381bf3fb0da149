// The Ca gRPC service (proto/gantry/v1/ca.proto): operator certificates, what the CA is, and root
// rotation. Served behind authz.ts's 'admin' guard on TCP, and as is on the root-only local socket.
import * as grpc from '@grpc/grpc-js';
import type { CaServer, RootRotation } from '../../proto/gen/gantry/v1/ca.ts';
import type { Store } from '../store/types.ts';
import { type ClusterCa, nodeCertLifetime, RotationError } from './ca.ts';
import { importRootCa } from './pki.ts';
import { derDigest } from './rotation.ts';
import type { RootRotator, RotationView } from './rotation-loop.ts';

function fail(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

function rotationMessage(v: RotationView, tokens: { worker: string; manager: string } | undefined): RootRotation {
  return {
    rotating: v.bundle.rotating,
    oldDigest: v.oldDigest,
    newDigest: v.newDigest,
    rotated: v.progress.rotated,
    total: v.progress.total,
    nodes: v.progress.nodes.map((n) => ({ nodeId: n.id, hostname: n.hostname, rotated: n.rotated, state: n.state, why: n.why })),
    workerToken: v.bundle.rotating ? '' : (tokens?.worker ?? ''),
    managerToken: v.bundle.rotating ? '' : (tokens?.manager ?? ''),
  };
}

export function caService(deps: { ca: ClusterCa; store: Store; log: (m: string) => void; rotator?: RootRotator }): CaServer {
  const viewRotation = (cb: grpc.sendUnaryData<RootRotation>) => {
    if (!deps.rotator) return cb(fail(grpc.status.UNIMPLEMENTED, 'this manager does not run root rotation'));
    deps.rotator.view().then(
      (v) => cb(null, rotationMessage(v, deps.store.view().cluster()?.joinTokens)),
      (err: Error) => cb(fail(grpc.status.UNAVAILABLE, `reading the root rotation: ${err.message}`)),
    );
  };
  return {
    issueClientCert: (call, cb) => {
      const { name, csr } = call.request;
      if (!csr?.length) return cb(fail(grpc.status.INVALID_ARGUMENT, 'send a certificate request (csr) for the operator key'));
      deps.ca.issueOperator(Buffer.from(csr).toString(), name || 'cli').then(
        ({ id, certPem }) => {
          deps.log(`ca: issued operator certificate ${id}`);
          cb(null, { id, certificate: Buffer.from(certPem), rootCaCert: Buffer.from(deps.ca.rootsPem()) });
        },
        (err: Error) => cb(fail(err.name === 'CsrError' ? grpc.status.INVALID_ARGUMENT : grpc.status.UNAVAILABLE, err.message)),
      );
    },
    getCa: (_call, cb) => {
      const cluster = deps.store.view().cluster();
      if (!cluster) return cb(fail(grpc.status.FAILED_PRECONDITION, 'this manager has no cluster yet'));
      const b = deps.ca.bundle();
      cb(null, {
        digest: b.token ? derDigest(b.token) : '',
        rootCaCert: Buffer.from(deps.ca.rootsPem()),
        nodeCertLifetimeMs: nodeCertLifetime(cluster),
        revoked: cluster.revoked.map((r) => r.id),
        rotatingTo: b.rotating ? derDigest(b.signing) : '',
      });
    },
    rotateRoot: (call, cb) => {
      const { certExpiryMs, caCert, caKey } = call.request;
      const expiry = Number(certExpiryMs) || 0;
      if (expiry < 0) return cb(fail(grpc.status.INVALID_ARGUMENT, '--cert-expiry must be positive'));
      if (Boolean(caCert?.length) !== Boolean(caKey?.length)) return cb(fail(grpc.status.INVALID_ARGUMENT, '--ca-cert and --ca-key go together'));
      const own = caCert?.length ? importRootCa(Buffer.from(caCert).toString(), Buffer.from(caKey).toString(), Date.now()) : Promise.resolve(undefined);
      own
        .then(async (root) => {
          const why = await deps.rotator?.refusal();
          if (why) throw new RotationError(why);
          return deps.ca.startRotation({ certExpiryMs: expiry || undefined, own: root });
        })
        .then(
          (r) => {
            deps.log(`ca: root CA rotation started: sha256:${r.oldDigest.slice(0, 16)}… -> sha256:${r.newDigest.slice(0, 16)}…`);
            viewRotation(cb);
          },
          (err: Error) => {
            const code = err.name === 'RootCaInputError' ? grpc.status.INVALID_ARGUMENT : err.name === 'RotationError' ? grpc.status.FAILED_PRECONDITION : grpc.status.UNAVAILABLE;
            cb(fail(code, err.message));
          },
        );
    },
    getRotation: (_call, cb) => viewRotation(cb),
    listNodeCertReports: (_call, cb) => {
      if (!deps.rotator) return cb(fail(grpc.status.UNIMPLEMENTED, 'this manager does not run root rotation'));
      cb(null, deps.rotator.notes());
    },
  };
}
