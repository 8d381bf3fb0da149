// `gantry node ls|inspect|update|promote|demote|rm|ps`: the cluster's hosts, their availability,
// labels and (stored, not yet acted on) desired role.
import { bool, list, str, UsageError } from '../args.ts';
import type { Command, CommandContext } from '../command.ts';
import { CallError } from '../connection.ts';
import { control, local } from '../control-client.ts';
import {
  availabilityText,
  FORMAT_FLAG,
  json,
  managerStatusText,
  nodeStatusText,
  outputFormat,
  prettyNode,
  table,
} from '../format.ts';
import { psRows } from './service.ts';
import type { Node } from '../../proto/gen/gantry/v1/objects.ts';

/** This host's node id, when the daemon we talk to can say (over TCP to another manager it cannot). */
async function selfId(ctx: CommandContext): Promise<string | undefined> {
  try {
    return (await local(ctx).info()).nodeId || undefined;
  } catch {
    return undefined;
  }
}

async function resolveRef(ctx: CommandContext, ref: string): Promise<string> {
  if (ref !== 'self') return ref;
  const id = await selfId(ctx);
  if (!id) throw new CallError('cannot tell which node "self" is: the daemon at this address did not say (name the node instead)', 5);
  return id;
}

/** Runs fn per ref, printing failures and carrying on; exit 1 if any failed. */
async function each(ctx: CommandContext, refs: string[], fn: (ref: string) => Promise<void>): Promise<number> {
  let code = 0;
  for (const ref of refs) {
    try {
      await fn(ref);
    } catch (e) {
      if (!(e instanceof CallError)) throw e;
      ctx.err.write(`Error: ${e.message}\n`);
      code = 1;
    }
  }
  return code;
}

const ls: Command = {
  path: ['node', 'ls'],
  aliases: [['node', 'list']],
  summary: 'List the nodes of the cluster',
  usage: 'gantry node ls [OPTIONS]',
  flags: [{ name: 'quiet', short: 'q', kind: 'bool', help: 'print only ids' }, FORMAT_FLAG],
  async run(args, ctx) {
    const format = outputFormat(args);
    const [res, self] = await Promise.all([control(ctx).listNodes(), selfId(ctx)]);
    const nodes = [...res.nodes].sort((a, b) => (a.description?.hostname ?? '').localeCompare(b.description?.hostname ?? ''));
    if (format === 'json') {
      ctx.out.write(json(nodes));
      return 0;
    }
    if (bool(args, 'quiet')) {
      for (const n of nodes) ctx.out.write(`${n.id}\n`);
      return 0;
    }
    const rows = nodes.map((n) => [
      `${n.id}${n.id === self ? ' *' : ''}`,
      n.description?.hostname ?? '',
      nodeStatusText(n),
      availabilityText(n),
      managerStatusText(n),
      n.description?.engineVersion ?? '',
    ]);
    ctx.out.write(table(['ID', 'HOSTNAME', 'STATUS', 'AVAILABILITY', 'MANAGER STATUS', 'ENGINE VERSION'], rows));
    return 0;
  },
};

const inspect: Command = {
  path: ['node', 'inspect'],
  summary: 'Show nodes in detail (JSON, or --pretty)',
  usage: 'gantry node inspect [OPTIONS] self|NODE [NODE...]',
  flags: [{ name: 'pretty', kind: 'bool', help: 'human-readable text instead of JSON' }, FORMAT_FLAG],
  async run(args, ctx) {
    if (args.positionals.length === 0) throw new UsageError('name at least one NODE (or self)');
    outputFormat(args);
    const api = control(ctx);
    const found: Node[] = [];
    const code = await each(ctx, args.positionals, async (ref) => {
      found.push(await api.getNode(await resolveRef(ctx, ref)));
    });
    ctx.out.write(bool(args, 'pretty') ? found.map(prettyNode).join('\n') : json(found));
    return code;
  },
};

const AVAILABILITY: Record<string, 0 | 1 | 2> = { active: 0, pause: 1, drain: 2 };

const update: Command = {
  path: ['node', 'update'],
  summary: "Update a node's availability or labels",
  usage: 'gantry node update [OPTIONS] NODE',
  flags: [
    { name: 'availability', kind: 'string', help: 'active, pause (no new tasks) or drain (move tasks away)' },
    { name: 'label-add', kind: 'list', help: 'add or replace a label KEY=VALUE' },
    { name: 'label-rm', kind: 'list', help: 'remove a label KEY' },
    { name: 'role', kind: 'string', help: 'desired role: worker or manager (stored; the multi-manager work acts on it)' },
  ],
  async run(args, ctx) {
    if (args.positionals.length !== 1) throw new UsageError('name exactly one NODE');
    const availability = str(args, 'availability');
    if (availability !== undefined && !(availability in AVAILABILITY)) {
      throw new UsageError(`--availability "${availability}" is not one of: active, pause, drain`);
    }
    const role = str(args, 'role');
    if (role !== undefined && role !== 'worker' && role !== 'manager') throw new UsageError(`--role "${role}" is not one of: worker, manager`);
    const adds = list(args, 'label-add').map((l) => {
      const eq = l.indexOf('=');
      if (eq === 0 || l === '') throw new UsageError(`--label-add "${l}": the key is empty (write KEY=VALUE)`);
      return eq < 0 ? ([l, ''] as const) : ([l.slice(0, eq), l.slice(eq + 1)] as const);
    });
    const rms = list(args, 'label-rm');
    if (availability === undefined && role === undefined && adds.length === 0 && rms.length === 0) {
      throw new UsageError('nothing to change: give --availability, --label-add, --label-rm or --role');
    }
    const api = control(ctx);
    const node = await api.getNode(await resolveRef(ctx, args.positionals[0]));
    const spec = { ...node.spec!, labels: { ...node.spec!.labels } };
    for (const k of rms) {
      if (!(k in spec.labels)) throw new CallError(`node "${args.positionals[0]}" has no label "${k}"`, 5);
      delete spec.labels[k];
    }
    for (const [k, v] of adds) spec.labels[k] = v;
    if (availability !== undefined) spec.availability = AVAILABILITY[availability];
    if (role !== undefined) spec.desiredRole = role === 'manager' ? 1 : 0;
    await api.updateNode({ ref: node.id, version: node.meta?.version ?? 0, spec, force: false });
    ctx.out.write(`${args.positionals[0]}\n`);
    return 0;
  },
};

function roleCommand(verb: 'promote' | 'demote'): Command {
  const role = verb === 'promote' ? 1 : 0;
  return {
    path: ['node', verb],
    summary: verb === 'promote' ? 'Make nodes managers (desired role)' : 'Make managers workers (desired role)',
    usage: `gantry node ${verb} [--force] NODE [NODE...]`,
    flags: verb === 'demote' ? [{ name: 'force', kind: 'bool', help: 'demote even if the managers left could not form a quorum' }] : [],
    async run(args, ctx) {
      if (args.positionals.length === 0) throw new UsageError('name at least one NODE');
      const api = control(ctx);
      const force = bool(args, 'force');
      const code = await each(ctx, args.positionals, async (ref) => {
        const node = await api.getNode(await resolveRef(ctx, ref));
        if ((node.spec?.desiredRole ?? node.role) === role) {
          ctx.out.write(`Node ${ref} is already a ${role === 1 ? 'manager' : 'worker'}.\n`);
          return;
        }
        await api.updateNode({ ref: node.id, version: node.meta?.version ?? 0, spec: { ...node.spec!, desiredRole: role }, force });
        ctx.out.write(`Node ${ref} ${verb}d to a ${role === 1 ? 'manager' : 'worker'} in the cluster.\n`);
      });
      if (code === 0) {
        const managers = (await api.listNodes()).nodes.filter((n) => (n.spec?.desiredRole ?? n.role) === 1).length;
        if (managers > 0 && managers % 2 === 0) {
          ctx.err.write(`warning: the cluster will have ${managers} managers: an even number tolerates no more failures than ${managers - 1}; add or remove one\n`);
        }
      }
      return code;
    },
  };
}

const rm: Command = {
  path: ['node', 'rm'],
  aliases: [['node', 'remove']],
  summary: 'Remove nodes from the cluster',
  usage: 'gantry node rm [OPTIONS] NODE [NODE...]',
  flags: [{ name: 'force', short: 'f', kind: 'bool', help: 'remove even a ready node (its tasks are rescheduled)' }],
  async run(args, ctx) {
    if (args.positionals.length === 0) throw new UsageError('name at least one NODE');
    const api = control(ctx);
    return each(ctx, args.positionals, async (ref) => {
      await api.removeNode({ ref: await resolveRef(ctx, ref), force: bool(args, 'force') });
      ctx.out.write(`${ref}\n`);
    });
  },
};

const ps: Command = {
  path: ['node', 'ps'],
  summary: 'List the tasks on nodes (default: this node)',
  usage: 'gantry node ps [OPTIONS] [self|NODE...]',
  flags: [{ name: 'no-trunc', kind: 'bool', help: 'do not truncate ids and errors' }, FORMAT_FLAG],
  async run(args, ctx) {
    const format = outputFormat(args);
    const api = control(ctx);
    const refs = args.positionals.length > 0 ? args.positionals : ['self'];
    const nodes = await api.listNodes();
    const hostnames = new Map(nodes.nodes.map((n) => [n.id, n.description?.hostname ?? n.id]));
    const tasks = [];
    for (const ref of refs) tasks.push(...(await api.listTasks({ node: await resolveRef(ctx, ref) })).tasks);
    if (format === 'json') {
      ctx.out.write(json(tasks));
      return 0;
    }
    ctx.out.write(
      table(['ID', 'NAME', 'IMAGE', 'NODE', 'DESIRED STATE', 'CURRENT STATE', 'ERROR'], psRows(tasks, hostnames, Date.now(), bool(args, 'no-trunc'))),
    );
    return 0;
  },
};

export const commands: Command[] = [ls, inspect, update, roleCommand('promote'), roleCommand('demote'), rm, ps];
