// What `service ls` shows per service: tasks running, tasks desired, jobs completed. Pure over a view.
import type { Node, Service, Task } from '../../proto/gen/gantry/v1/objects.ts';
import { matches, parseConstraint } from './constraints.ts';

const RUNNING = 512;
const COMPLETE = 576;
const NODE_READY = 2;
const DRAIN = 2;

/** Nodes a global service's tasks may run on: ready, not drained, matching every constraint. */
export function eligibleNodes(service: Service, nodes: Node[]): Node[] {
  const constraints = (service.spec?.task?.placement?.constraints ?? [])
    .map(parseConstraint)
    .flatMap((c) => (c.ok ? [c.value] : []));
  return nodes.filter(
    (n) => n.status?.state === NODE_READY && n.spec?.availability !== DRAIN && constraints.every((c) => matches(n, c)),
  );
}

export function summarize(service: Service, tasks: Task[], nodes: Node[]): { running: number; desired: number; completed: number } {
  const running = tasks.filter((t) => t.status?.state === RUNNING && t.desiredState === RUNNING).length;
  const mode = service.spec?.mode;
  let desired = 0;
  let completed = 0;
  switch (mode?.$case) {
    case undefined:
      break;
    case 'replicated':
      desired = mode.value.replicas;
      break;
    case 'global':
      desired = eligibleNodes(service, nodes).length;
      break;
    case 'replicatedJob':
      desired = mode.value.totalCompletions;
      completed = tasks.filter((t) => t.jobIteration === service.jobIteration && t.status?.state === COMPLETE).length;
      break;
    case 'globalJob':
      desired = eligibleNodes(service, nodes).length;
      completed = tasks.filter((t) => t.jobIteration === service.jobIteration && t.status?.state === COMPLETE).length;
      break;
    default: {
      const never: never = mode;
      throw new Error(`unknown service mode ${JSON.stringify(never)}`);
    }
  }
  return { running, desired, completed };
}
