// `gantry network create|ls|inspect|rm`: cluster networks (overlays across hosts), their subnets
// and how many addresses are used and free.
import { ControlClient } from '../../proto/gen/gantry/v1/control.ts';
import type { NetworkUsage } from '../../proto/gen/gantry/v1/network.ts';
import { bool, list, str, UsageError } from '../args.ts';
import type { Command, CommandContext } from '../command.ts';
import { CallError, unary } from '../connection.ts';
import { FORMAT_FLAG, json, outputFormat, table } from '../format.ts';

function api(ctx: CommandContext) {
  const conn = ctx.connect();
  const c = conn.client(ControlClient);
  return {
    create: (spec: Parameters<typeof c.createNetwork>[0]['spec']) => unary(conn, c.createNetwork.bind(c), { spec }),
    inspect: (ref: string) => unary(conn, c.inspectNetwork.bind(c), { ref }),
    list: () => unary(conn, c.listNetworks.bind(c), {}),
    remove: (ref: string) => unary(conn, c.removeNetwork.bind(c), { ref }),
  };
}

function scope(u: NetworkUsage): string {
  return u.network?.spec?.driver === 'bridge' ? 'local' : 'swarm';
}

const create: Command = {
  path: ['network', 'create'],
  summary: 'Create a network (an overlay spanning every host)',
  usage: 'gantry network create [--driver overlay] [--subnet CIDR] [--attachable] [--label K=V] NAME',
  flags: [
    { name: 'driver', short: 'd', kind: 'string', help: 'overlay (the default and only cluster driver)' },
    { name: 'subnet', kind: 'string', help: 'the subnet in CIDR form (default: a /24 from 10.0.0.0/8)' },
    { name: 'attachable', kind: 'bool', help: 'recorded for Docker compatibility; gantry runs no standalone containers yet, so only services attach' },
    { name: 'label', kind: 'list', help: 'a label KEY=VALUE' },
  ],
  async run(args, ctx) {
    if (args.positionals.length !== 1) throw new UsageError('name exactly one NETWORK');
    const labels: Record<string, string> = {};
    for (const l of list(args, 'label')) {
      const i = l.indexOf('=');
      labels[i < 0 ? l : l.slice(0, i)] = i < 0 ? '' : l.slice(i + 1);
    }
    const n = await api(ctx).create({
      name: args.positionals[0],
      driver: str(args, 'driver') || 'overlay',
      subnet: str(args, 'subnet') ?? '',
      attachable: bool(args, 'attachable'),
      labels,
      ingress: false,
    });
    if (n.status?.message) ctx.err.write(`Warning: ${n.status.message}\n`);
    ctx.out.write(`${n.id}\n`);
    return 0;
  },
};

const ls: Command = {
  path: ['network', 'ls'],
  aliases: [['network', 'list']],
  summary: 'List networks with their subnets and address use',
  usage: 'gantry network ls [OPTIONS]',
  flags: [{ name: 'quiet', short: 'q', kind: 'bool', help: 'print only ids' }, FORMAT_FLAG],
  async run(args, ctx) {
    const format = outputFormat(args);
    const res = await api(ctx).list();
    if (format === 'json') {
      ctx.out.write(json(res.networks));
      return 0;
    }
    if (bool(args, 'quiet')) {
      for (const u of res.networks) ctx.out.write(`${u.network?.id}\n`);
      return 0;
    }
    const rows = res.networks.map((u) => {
      const n = u.network;
      const isBridge = n?.spec?.driver === 'bridge';
      return [
        n?.id.slice(0, 12) ?? '',
        n?.spec?.name ?? '',
        n?.spec?.driver ?? '',
        scope(u),
        n?.status?.subnet || n?.status?.message || '(allocating)',
        isBridge ? `${Object.keys(n?.status?.nodeAddrs ?? {}).length} hosts` : `${u.used}/${u.size}`,
      ];
    });
    ctx.out.write(table(['NETWORK ID', 'NAME', 'DRIVER', 'SCOPE', 'SUBNET', 'USED'], rows));
    return 0;
  },
};

const inspect: Command = {
  path: ['network', 'inspect'],
  summary: 'Show networks in detail: subnet, VNI, used and free addresses (JSON)',
  usage: 'gantry network inspect NETWORK [NETWORK...]',
  flags: [FORMAT_FLAG],
  async run(args, ctx) {
    if (args.positionals.length === 0) throw new UsageError('name at least one NETWORK');
    outputFormat(args);
    const out: NetworkUsage[] = [];
    let code = 0;
    for (const ref of args.positionals) {
      try {
        out.push(await api(ctx).inspect(ref));
      } catch (e) {
        if (!(e instanceof CallError)) throw e;
        ctx.err.write(`Error: ${e.message}\n`);
        code = 1;
      }
    }
    ctx.out.write(json(out));
    return code;
  },
};

const rm: Command = {
  path: ['network', 'rm'],
  aliases: [['network', 'remove']],
  summary: 'Remove networks no service uses',
  usage: 'gantry network rm NETWORK [NETWORK...]',
  flags: [],
  async run(args, ctx) {
    if (args.positionals.length === 0) throw new UsageError('name at least one NETWORK');
    let code = 0;
    for (const ref of args.positionals) {
      try {
        await api(ctx).remove(ref);
        ctx.out.write(`${ref}\n`);
      } catch (e) {
        if (!(e instanceof CallError)) throw e;
        ctx.err.write(`Error: ${e.message}\n`);
        code = 1;
      }
    }
    return code;
  },
};

export const commands: Command[] = [create, ls, inspect, rm];
