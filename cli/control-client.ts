// The cluster commands' view of the control API: one promise per RPC over the command's connection,
// failures as CallError (the server's message), so commands read like the operations they perform.
import {
  ControlClient,
  type CreateServiceRequest,
  type ListTasksRequest,
  type RemoveNodeRequest,
  type RotateJoinTokenRequest,
  type UpdateNodeRequest,
  type UpdateServiceRequest,
} from '../proto/gen/gantry/v1/control.ts';
import { LocalClient, type LocalJoinRequest, type InitRequest } from '../proto/gen/gantry/v1/local.ts';
import type { CommandContext } from './command.ts';
import { unary } from './connection.ts';

export function control(ctx: CommandContext) {
  const conn = ctx.connect();
  const c = conn.client(ControlClient);
  return {
    client: c,
    target: conn.target,
    getNode: (ref: string) => unary(conn, c.getNode.bind(c), { ref }),
    listNodes: () => unary(conn, c.listNodes.bind(c), {}),
    updateNode: (req: UpdateNodeRequest) => unary(conn, c.updateNode.bind(c), req),
    removeNode: (req: RemoveNodeRequest) => unary(conn, c.removeNode.bind(c), req),
    createService: (req: CreateServiceRequest) => unary(conn, c.createService.bind(c), req),
    getService: (ref: string) => unary(conn, c.getService.bind(c), { ref }),
    listServices: () => unary(conn, c.listServices.bind(c), {}),
    updateService: (req: UpdateServiceRequest) => unary(conn, c.updateService.bind(c), req),
    removeService: (ref: string) => unary(conn, c.removeService.bind(c), { ref }),
    getTask: (ref: string) => unary(conn, c.getTask.bind(c), { ref }),
    listTasks: (req: Partial<ListTasksRequest>) =>
      unary(conn, c.listTasks.bind(c), { service: '', node: '', desiredRunningOnly: false, ...req }),
    getCluster: () => unary(conn, c.getCluster.bind(c), {}),
    rotateJoinToken: (req: RotateJoinTokenRequest) => unary(conn, c.rotateJoinToken.bind(c), req),
  };
}

export type Control = ReturnType<typeof control>;

export function local(ctx: CommandContext) {
  const conn = ctx.connect();
  const c = conn.client(LocalClient);
  return {
    init: (req: InitRequest) => unary(conn, c.init.bind(c), req, 120_000),
    join: (req: LocalJoinRequest) => unary(conn, c.join.bind(c), req, 120_000),
    leave: (force: boolean) => unary(conn, c.leave.bind(c), { force }, 120_000),
    info: () => unary(conn, c.info.bind(c), {}),
  };
}
