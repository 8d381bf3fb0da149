// The Secrets gRPC service (proto/gantry/v1/secrets.proto): create (value sealed before it is
// stored), list, inspect (never the value), remove (refused while a service uses it).
import * as grpc from '@grpc/grpc-js';
import type { SecretInfo, SecretsServer } from '../../proto/gen/gantry/v1/secrets.ts';
import { newId } from '../ids.ts';
import type { Store } from '../store/types.ts';
import { noun, type SecretKind, type StoredSecret, sealValue, usedBy, validate } from './secrets.ts';

function fail(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

export interface SecretsDeps {
  store: Store;
  clusterKey: () => Buffer;
  now?: () => number;
  log?: (m: string) => void;
}

function kindOf(config: boolean): SecretKind {
  return config ? 'configs' : 'secrets';
}

function resolve(store: Store, kind: SecretKind, ref: string): StoredSecret {
  const all = store.view().list(kind) as StoredSecret[];
  const found = all.find((s) => s.id === ref) ?? all.find((s) => s.spec?.name === ref) ?? (() => {
    const byPrefix = all.filter((s) => ref.length >= 3 && s.id.startsWith(ref));
    return byPrefix.length === 1 ? byPrefix[0] : undefined;
  })();
  if (!found) throw fail(grpc.status.NOT_FOUND, `${noun(kind)} "${ref}" not found: see \`gantry ${noun(kind)} ls\``);
  return found;
}

function info(store: Store, kind: SecretKind, s: StoredSecret): SecretInfo {
  return {
    id: s.id,
    name: s.spec?.name ?? '',
    labels: s.spec?.labels ?? {},
    createdAt: s.meta?.createdAt ?? 0,
    updatedAt: s.meta?.updatedAt ?? 0,
    size: s.size,
    digest: '',
    usedBy: usedBy(kind, s, store.view().list('services')),
  };
}

export function secretsService(deps: SecretsDeps): SecretsServer {
  const { store } = deps;
  const now = deps.now ?? Date.now;
  const unary =
    <Req, Res>(fn: (req: Req) => Promise<Res> | Res): grpc.handleUnaryCall<Req, Res> =>
    (call, cb) => {
      Promise.resolve()
        .then(() => fn(call.request))
        .then(
          (res) => cb(null, res),
          (err: grpc.ServiceError) => cb(err.code !== undefined ? err : fail(grpc.status.INTERNAL, String(err))),
        );
    };
  return {
    createSecret: unary(async (req) => {
      const kind = kindOf(req.config);
      const name = req.spec?.name ?? '';
      const data = req.spec?.data ?? new Uint8Array();
      const problems = validate(kind, name, data);
      if (problems.length > 0) throw fail(grpc.status.INVALID_ARGUMENT, problems.join('; '));
      if ((store.view().list(kind) as StoredSecret[]).some((s) => s.spec?.name === name)) {
        throw fail(grpc.status.ALREADY_EXISTS, `${noun(kind)} "${name}" already exists: values are immutable, create one with another name and update the services`);
      }
      const id = newId();
      const t = now();
      const object: StoredSecret = {
        id,
        meta: { version: 0, createdAt: t, updatedAt: t },
        spec: { name, labels: req.spec?.labels ?? {}, data: sealValue(deps.clusterKey(), kind, id, data) },
        size: data.length,
        digest: '', // a digest of the clear value would let a low-entropy secret be guessed
      };
      const res = await store.commit([{ op: 'create', kind, object } as Parameters<Store['commit']>[0][number]]);
      if (!res.ok) throw fail(grpc.status.ABORTED, `creating ${noun(kind)} "${name}": ${res.conflict.reason}; retry`);
      await store.waitFor(res.revision);
      deps.log?.(`${noun(kind)} ${name} (${id}) created, ${data.length} bytes`);
      return info(store, kind, object);
    }),
    listSecrets: unary((req) => {
      const kind = kindOf(req.config);
      return { secrets: (store.view().list(kind) as StoredSecret[]).map((s) => info(store, kind, s)).sort((a, b) => a.name.localeCompare(b.name)) };
    }),
    getSecret: unary((req) => {
      const kind = kindOf(req.config);
      return info(store, kind, resolve(store, kind, req.ref));
    }),
    removeSecret: unary(async (req) => {
      const kind = kindOf(req.config);
      const s = resolve(store, kind, req.ref);
      const users = usedBy(kind, s, store.view().list('services'));
      if (users.length > 0) {
        throw fail(grpc.status.FAILED_PRECONDITION, `${noun(kind)} "${s.spec?.name}" is used by service${users.length > 1 ? 's' : ''} ${users.join(', ')}: remove it from them first (service update --${noun(kind)}-rm)`);
      }
      const res = await store.commit([{ op: 'delete', kind, id: s.id, version: store.view().version(kind, s.id) }]);
      if (!res.ok && res.conflict.reason !== 'missing') throw fail(grpc.status.ABORTED, `removing ${noun(kind)} "${s.spec?.name}": ${res.conflict.reason}; retry`);
      return {};
    }),
  };
}
