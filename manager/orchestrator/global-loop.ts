// GlobalOrchestrator: the shared orchestrator loop (orchestrator-loop.ts) around reconcileGlobal
// and reconcileGlobalJob; any node change re-reconciles every global service.
import { reconcileGlobal } from './global.ts';
import { reconcileGlobalJob } from './jobs.ts';
import { OrchestratorLoop, type OrchestratorOptions } from './orchestrator-loop.ts';

export class GlobalOrchestrator extends OrchestratorLoop {
  constructor(opts: OrchestratorOptions) {
    super(opts, 'orchestrator/global', (service, ctx) => {
      const mode = service.spec?.mode?.$case;
      if (mode !== 'global' && mode !== 'globalJob') return undefined;
      const input = { service, tasks: ctx.view.tasksByService(service.id), nodes: ctx.nodes(), history: ctx.history, now: ctx.now };
      return mode === 'global' ? reconcileGlobal(input) : reconcileGlobalJob(input);
    });
  }
}
