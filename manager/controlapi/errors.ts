// The control API's failures as small named classes, and the ONE place they become gRPC statuses.
// Handlers throw (or return) these; server.ts passes anything thrown through toServiceError().
import * as grpc from '@grpc/grpc-js';
import { StoreUnavailableError } from '../store/types.ts';

/** A field of the request is wrong; the message names the field and what is allowed. */
export class ValidationError extends Error {
  override name = 'ValidationError';
  readonly problems: string[];
  constructor(problems: string[]) {
    super(problems.length === 1 ? problems[0] : `${problems.length} problems: ${problems.join('; ')}`);
    this.problems = problems;
  }
}

export class NotFoundError extends Error {
  override name = 'NotFoundError';
}

/** An id prefix that matches several objects. */
export class AmbiguousError extends Error {
  override name = 'AmbiguousError';
}

export class AlreadyExistsError extends Error {
  override name = 'AlreadyExistsError';
}

/** Someone else changed the object since the caller read it (optimistic concurrency). */
export class ConflictError extends Error {
  override name = 'ConflictError';
}

/** The request is valid but the object's state refuses it (remove a ready node, the last manager). */
export class PreconditionError extends Error {
  override name = 'PreconditionError';
}

/** A dependency other than the store failed (the registry said no, ...). */
export class DependencyError extends Error {
  override name = 'DependencyError';
}

export function statusOf(err: unknown): { code: grpc.status; details: string } {
  if (err instanceof ValidationError) return { code: grpc.status.INVALID_ARGUMENT, details: err.message };
  if (err instanceof NotFoundError) return { code: grpc.status.NOT_FOUND, details: err.message };
  if (err instanceof AmbiguousError) return { code: grpc.status.INVALID_ARGUMENT, details: err.message };
  if (err instanceof AlreadyExistsError) return { code: grpc.status.ALREADY_EXISTS, details: err.message };
  if (err instanceof ConflictError) return { code: grpc.status.ABORTED, details: err.message };
  if (err instanceof PreconditionError) return { code: grpc.status.FAILED_PRECONDITION, details: err.message };
  if (err instanceof DependencyError) return { code: grpc.status.FAILED_PRECONDITION, details: err.message };
  if (err instanceof StoreUnavailableError || (err instanceof Error && err.name === 'StoreUnavailableError')) {
    return {
      code: grpc.status.UNAVAILABLE,
      details:
        `the cluster store (etcd) is unavailable: ${err.message}. ` +
        'Check that a majority of managers are up (gantry node ls from another manager) and retry',
    };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { code: grpc.status.INTERNAL, details: `internal error in the control API: ${message}` };
}

/** Trailer on every error the control API itself answers, so a client can tell "gantryd said no"
 * (e.g. UNAVAILABLE because etcd lost quorum) from "gantryd could not be reached". */
export const ERROR_ORIGIN_KEY = 'gantry-error-origin';

/** The grpc-js error object a handler passes to its callback / emits on its stream. */
export function toServiceError(err: unknown): Partial<grpc.ServiceError> {
  const { code, details } = statusOf(err);
  const metadata = new grpc.Metadata();
  metadata.set(ERROR_ORIGIN_KEY, 'controlapi');
  return { code, details, message: details, name: 'ServiceError', metadata };
}
