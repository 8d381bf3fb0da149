// The cluster commands' view of the control API: one promise per RPC over the command's connection
// (the local unary socket when there is one: Connection.call), failures as CallError (the server's
// message), so commands read like the operations they perform.
import {
  ControlClient,
  ControlService,
  type CreateServiceRequest,
  type ListTasksRequest,
  type RemoveNodeRequest,
  type RotateJoinTokenRequest,
  type UpdateNodeRequest,
  type UpdateServiceRequest,
} from '../proto/gen/gantry/v1/control.ts';
import { type InitRequest, type LocalJoinRequest, LocalService } from '../proto/gen/gantry/v1/local.ts';
import type { CommandContext } from './command.ts';

export function control(ctx: CommandContext) {
  const conn = ctx.connect();
  return {
    /** For the streaming calls (logs, task watches): gRPC, made on first use. */
    get client() {
      return conn.client(ControlClient);
    },
    target: conn.target,
    getNode: (ref: string) => conn.call(ControlService.getNode, { ref }),
    listNodes: () => conn.call(ControlService.listNodes, {}),
    updateNode: (req: UpdateNodeRequest) => conn.call(ControlService.updateNode, req),
    removeNode: (req: RemoveNodeRequest) => conn.call(ControlService.removeNode, req),
    createService: (req: CreateServiceRequest) => conn.call(ControlService.createService, req),
    getService: (ref: string) => conn.call(ControlService.getService, { ref }),
    listServices: () => conn.call(ControlService.listServices, {}),
    updateService: (req: UpdateServiceRequest) => conn.call(ControlService.updateService, req),
    removeService: (ref: string) => conn.call(ControlService.removeService, { ref }),
    getTask: (ref: string) => conn.call(ControlService.getTask, { ref }),
    listTasks: (req: Partial<ListTasksRequest>) =>
      conn.call(ControlService.listTasks, { service: '', node: '', desiredRunningOnly: false, ...req }),
    getCluster: () => conn.call(ControlService.getCluster, {}),
    rotateJoinToken: (req: RotateJoinTokenRequest) => conn.call(ControlService.rotateJoinToken, req),
  };
}

export type Control = ReturnType<typeof control>;

export function local(ctx: CommandContext) {
  const conn = ctx.connect();
  return {
    init: (req: InitRequest) => conn.call(LocalService.init, req, 120_000),
    join: (req: LocalJoinRequest) => conn.call(LocalService.join, req, 120_000),
    leave: (force: boolean) => conn.call(LocalService.leave, { force }, 120_000),
    info: () => conn.call(LocalService.info, {}),
  };
}
