// The Ca gRPC service (proto/gantry/v1/ca.proto): operator certificates and what the CA is. Served
// behind authz.ts's 'admin' guard on TCP, and as is on the root-only local socket.
import * as grpc from '@grpc/grpc-js';
import type { CaServer } from '../../proto/gen/gantry/v1/ca.ts';
import type { Store } from '../store/types.ts';
import { type ClusterCa, nodeCertLifetime } from './ca.ts';
import { certDigest, splitPem } from './pki.ts';

function fail(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

export function caService(deps: { ca: ClusterCa; store: Store; log: (m: string) => void }): CaServer {
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
      const roots = deps.ca.rootsPem();
      const first = splitPem(roots)[0];
      cb(null, {
        digest: first ? certDigest(first) : '',
        rootCaCert: Buffer.from(roots),
        nodeCertLifetimeMs: nodeCertLifetime(cluster),
        revoked: cluster.revoked.map((r) => r.id),
      });
    },
  };
}
