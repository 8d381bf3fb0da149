// The control API's network RPCs (create, inspect, ls, rm) and the published-port check that
// service create/update call. Handlers plug into controlService through deps.handlers.
import type * as grpc from '@grpc/grpc-js';
import type { ControlServer, CreateNetworkRequest, Empty, InspectNetworkRequest, ListNetworksResponse, RemoveNetworkRequest } from '../../proto/gen/gantry/v1/control.ts';
import type { Network, NetworkUsage } from '../../proto/gen/gantry/v1/network.ts';
import { PublishMode, type ServiceSpec } from '../../proto/gen/gantry/v1/objects.ts';
import { formatCidr, overlaps, parseCidr } from '../allocator/ipam.ts';
import { addressUsage, findNetwork, holdsAddress, networkSize, publishedPorts, SPECIAL_NETWORKS } from '../allocator/network-allocator.ts';
import { newId } from '../ids.ts';
import type { ReadView, Store } from '../store/types.ts';
import { AlreadyExistsError, NotFoundError, PreconditionError, toServiceError, ValidationError } from './errors.ts';

const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;

export function usageOf(view: ReadView, n: Network): NetworkUsage {
  const used = addressUsage(view, n);
  const size = networkSize(n);
  const tasks: string[] = [];
  const vips: string[] = [];
  for (const [ip, holder] of [...used].sort((a, b) => a[0] - b[0])) {
    const addr = [(ip >>> 24) & 255, (ip >>> 16) & 255, (ip >>> 8) & 255, ip & 255].join('.');
    if (holder.startsWith('vip')) vips.push(`${holder.replace('vip of service ', '')} ${addr}`);
    else tasks.push(`${holder} ${addr}`);
  }
  return { network: n, size, used: used.size, free: Math.max(0, size - used.size), tasks, vips };
}

/** Problems with a service spec's networks and published ports (empty = fine). */
export function checkServiceNetworking(view: ReadView, spec: ServiceSpec | undefined, selfId?: string): string[] {
  const p: string[] = [];
  const targets = (spec?.task?.networks ?? []).map((n) => n.target);
  for (const t of targets) {
    if (SPECIAL_NETWORKS.has(t)) continue;
    const n = findNetwork(view, t);
    if (!n) p.push(`network "${t}" not found: create it with \`gantry network create --driver overlay ${t}\``);
    else if (n.spec?.ingress) p.push(`network "${t}" is the routing mesh's own: publish a port with --publish instead`);
  }
  if (targets.includes('host') && targets.length > 1) p.push('--network host cannot be combined with other networks');
  const taken = publishedPorts(view, selfId);
  const seen = new Set<string>();
  for (const port of spec?.endpoint?.ports ?? []) {
    if (!port.publishedPort) continue;
    const key = `${port.protocol || 'tcp'}/${port.publishedPort}`;
    if (seen.has(`${key}/${port.publishMode}`)) p.push(`port ${port.publishedPort}/${port.protocol || 'tcp'} is published twice`);
    seen.add(`${key}/${port.publishMode}`);
    if (port.publishMode !== PublishMode.PUBLISH_MODE_INGRESS) continue;
    const holder = taken.get(key);
    if (holder) p.push(`port ${port.publishedPort}/${port.protocol || 'tcp'} is already published by service "${holder}": choose another port or remove that service`);
  }
  return p;
}

export interface NetworkApi {
  createNetwork(req: CreateNetworkRequest): Promise<Network>;
  inspectNetwork(req: InspectNetworkRequest): Promise<NetworkUsage>;
  listNetworks(): Promise<ListNetworksResponse>;
  removeNetwork(req: RemoveNetworkRequest): Promise<Empty>;
}

export function networkApi(deps: { store: Store; clock: { now(): number }; waitMs?: number }): NetworkApi {
  const { store, clock } = deps;
  const must = (ref: string): Network => {
    if (!ref) throw new ValidationError(['a network name or id is required']);
    const n = findNetwork(store.view(), ref);
    if (!n) throw new NotFoundError(`network "${ref}" not found`);
    return n;
  };
  return {
    async createNetwork(req) {
      const spec = req.spec;
      const problems: string[] = [];
      const name = spec?.name ?? '';
      if (!NAME.test(name)) problems.push(`network name "${name}" must be 1-63 letters, digits, "_", "." or "-"`);
      if (SPECIAL_NETWORKS.has(name) || name === 'ingress') problems.push(`network name "${name}" is reserved`);
      const driver = spec?.driver || 'overlay';
      if (driver !== 'overlay') problems.push(`driver "${driver}" is not supported for cluster networks (use overlay)`);
      let subnet = '';
      if (spec?.subnet) {
        const c = parseCidr(spec.subnet, true);
        if (!c) problems.push(`subnet "${spec.subnet}" is not an IPv4 CIDR (like 10.20.0.0/24)`);
        else if (c.prefix > 29 || c.prefix < 8) problems.push(`subnet "${spec.subnet}" must be between /8 and /29`);
        else {
          subnet = formatCidr(c);
          for (const o of store.view().list('networks')) {
            const oc = parseCidr(o.status?.subnet || o.spec?.subnet || '', true);
            if (oc && o.spec?.driver !== 'bridge' && overlaps(c, oc)) problems.push(`subnet ${subnet} overlaps network "${o.spec?.name}" (${formatCidr(oc)})`);
          }
        }
      }
      if (problems.length) throw new ValidationError(problems);
      if (findNetwork(store.view(), name)?.spec?.name === name) throw new AlreadyExistsError(`network "${name}" already exists`);
      const id = newId();
      const now = clock.now();
      const object: Network = {
        id,
        meta: { version: 0, createdAt: now, updatedAt: now },
        spec: { name, driver, subnet, attachable: spec?.attachable ?? false, labels: spec?.labels ?? {}, ingress: false },
      };
      const res = await store.commit([{ op: 'create', kind: 'networks', object }]);
      if (!res.ok) throw new AlreadyExistsError(`network id ${id} already taken: retry`);
      await store.waitFor(res.revision);
      // the allocator (leader) gives it a subnet and a VNI: wait a little so inspect shows them
      const until = clock.now() + (deps.waitMs ?? 3000);
      while (Date.now() < until) {
        const n = store.view().get('networks', id);
        if (n?.status?.subnet || n?.status?.message) return n;
        await new Promise((r) => setTimeout(r, 20));
      }
      return store.view().get('networks', id) ?? object;
    },
    async inspectNetwork(req) {
      return usageOf(store.view(), must(req.ref));
    },
    async listNetworks() {
      const view = store.view();
      return { networks: view.list('networks').map((n) => usageOf(view, n)).sort((a, b) => (a.network?.spec?.name ?? '').localeCompare(b.network?.spec?.name ?? '')) };
    },
    async removeNetwork(req) {
      const n = must(req.ref);
      const name = n.spec?.name ?? n.id;
      if (n.spec?.ingress || n.spec?.driver === 'bridge') throw new PreconditionError(`network "${name}" belongs to the system and cannot be removed`);
      const view = store.view();
      for (const s of view.list('services')) {
        if ((s.spec?.task?.networks ?? []).some((a) => a.target === n.id || a.target === name)) {
          throw new PreconditionError(`network "${name}" is in use by service "${s.spec?.name}": remove the service or update it without --network ${name}`);
        }
      }
      const holder = view.list('tasks').find((t) => holdsAddress(t) && t.networks.some((a) => a.networkId === n.id));
      if (holder) throw new PreconditionError(`network "${name}" is still used by task ${holder.id} (${holder.serviceName}): wait until it has stopped`);
      const res = await store.commit([{ op: 'delete', kind: 'networks', id: n.id }]);
      if (!res.ok) throw new NotFoundError(`network "${name}" not found`);
      await store.waitFor(res.revision);
      return {};
    },
  };
}

function unary<Req, Res>(fn: (req: Req) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, cb) => {
    fn(call.request).then(
      (res) => cb(null, res),
      (err: unknown) => cb(toServiceError(err) as grpc.ServiceError),
    );
  };
}

/** The handlers to pass as controlService({..., handlers: networkHandlers(deps)}). */
export function networkHandlers(deps: { store: Store; clock: { now(): number } }): Partial<ControlServer> {
  const api = networkApi(deps);
  return {
    createNetwork: unary(api.createNetwork),
    inspectNetwork: unary(api.inspectNetwork),
    listNetworks: unary(() => api.listNetworks()),
    removeNetwork: unary(api.removeNetwork),
  };
}
