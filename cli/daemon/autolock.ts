// The Autolock service on gantryd's unix socket: unlock this host's locked manager, show or rotate
// the cluster's unlock key, turn autolock on or off. The keys' logic is manager/ca/autolock*.ts.
import * as grpc from '@grpc/grpc-js';
import type { AutolockServer, UnlockKeyResponse } from '../../proto/gen/gantry/v1/autolock.ts';
import type { AutolockKeeper } from '../../manager/ca/autolock-keeper.ts';
import { newUnlockKey } from '../../manager/ca/autolock.ts';

export const LOCKED_MESSAGE = 'this manager is locked: run `gantry cluster unlock` and give the unlock key (autolock is on for this cluster)';

/** A refusal with its gRPC code (the CLI prints the message). */
export class AutolockError extends Error {
  readonly code: grpc.status;
  constructor(code: grpc.status, message: string) {
    super(message);
    this.code = code;
  }
}

export interface AutolockDeps {
  /** Unlocks this host's manager with `key`; returns the node id (throws AutolockError to refuse). */
  unlock(key: string): Promise<string>;
  /** This host's running manager's keeper, or why there is none (a worker, locked, not in a cluster). */
  keeper(): AutolockKeeper | string;
}

function fail(err: unknown): grpc.ServiceError {
  const code = err instanceof AutolockError ? err.code : grpc.status.INTERNAL;
  const details = (err as Error).message;
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

export function autolockService(deps: AutolockDeps): AutolockServer {
  const keeper = (): AutolockKeeper => {
    const k = deps.keeper();
    if (typeof k === 'string') throw new AutolockError(grpc.status.FAILED_PRECONDITION, k);
    return k;
  };
  const answer =
    <Req, Res>(fn: (req: Req) => Promise<Res>): grpc.handleUnaryCall<Req, Res> =>
    (call, cb) => {
      fn(call.request).then(
        (res) => cb(null, res),
        (err) => cb(fail(err)),
      );
    };
  return {
    unlock: answer(async (req) => ({ nodeId: await deps.unlock(req.key) })),
    unlockKey: answer(async (req): Promise<UnlockKeyResponse> => {
      const k = keeper();
      const current = k.unlockKey();
      if (!req.rotate) return { key: current ?? '', autolock: current !== undefined };
      if (!current) throw new AutolockError(grpc.status.FAILED_PRECONDITION, 'autolock is off for this cluster: there is no unlock key to rotate (turn it on with `gantry cluster update --autolock=true`)');
      const next = newUnlockKey();
      await k.setUnlockKey(next);
      return { key: next, autolock: true };
    }),
    setAutolock: answer(async (req): Promise<UnlockKeyResponse> => {
      const key = await keeper().setAutolock(req.enabled);
      return { key: key ?? '', autolock: key !== undefined };
    }),
  };
}
