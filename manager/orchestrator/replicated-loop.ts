// ReplicatedOrchestrator: the shared orchestrator loop (orchestrator-loop.ts) around
// reconcileReplicated and reconcileReplicatedJob.
import { reconcileReplicatedJob } from './jobs.ts';
import { OrchestratorLoop, type OrchestratorOptions } from './orchestrator-loop.ts';
import { reconcileReplicated } from './replicated.ts';

export type { OrchestratorOptions };

export class ReplicatedOrchestrator extends OrchestratorLoop {
  constructor(opts: OrchestratorOptions) {
    super(opts, 'orchestrator/replicated', (service, ctx) => {
      const mode = service.spec?.mode?.$case;
      if (mode !== 'replicated' && mode !== 'replicatedJob') return undefined;
      const input = { service, tasks: ctx.view.tasksByService(service.id), node: ctx.node, history: ctx.history, now: ctx.now };
      return mode === 'replicated' ? reconcileReplicated(input) : reconcileReplicatedJob(input);
    });
  }
}
