// The seam between the control API's ServiceLogs and whoever can read task logs (the dispatcher,
// which asks workers over their sessions). The control API resolves tasks; the broker fetches lines.
import type { LogMessage } from '../../proto/gen/gantry/v1/control.ts';
import type { Task } from '../../proto/gen/gantry/v1/objects.ts';

export interface LogOptions {
  follow: boolean;
  /** Lines from the end of each task's log; -1 = all. */
  tail: number;
  /** Only lines at or after this time (ms since the epoch); 0 = from the start. */
  sinceMs: number;
}

export interface LogBroker {
  /**
   * Streams the logs of `tasks` to onMessage until done (not following: every task's log read to
   * the end) or `signal` aborts. A node that cannot be reached yields one message with `error` set
   * (and taskId/nodeId filled) and the others keep streaming; the promise rejects only when nothing
   * at all can be read. Must return promptly once `signal` aborts.
   */
  subscribe(tasks: Task[], opts: LogOptions, onMessage: (m: LogMessage) => void, signal: AbortSignal): Promise<void>;
}
