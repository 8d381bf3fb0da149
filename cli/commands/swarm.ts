// `gantry init|join|leave|join-token|info`: this host's membership in a cluster (service Local on the
// host's own gantryd) and the join tokens (service Control), printed the way `docker swarm` does.
import { bool, str, UsageError } from '../args.ts';
import type { Command, CommandContext } from '../command.ts';
import { type Control, control, local } from '../control-client.ts';
import { json, outputFormat, FORMAT_FLAG } from '../format.ts';
import { formatBytes } from '../units.ts';
import { autolock, unlockKeyInstructions } from './unlock.ts';

/** The address other hosts join through: this node's if it is a manager, else the leader's, else any manager's. */
async function managerAddr(api: Control, ctx: CommandContext): Promise<string> {
  const [nodes, self] = await Promise.all([
    api.listNodes(),
    local(ctx)
      .info()
      .then((i) => i.nodeId)
      .catch(() => ''),
  ]);
  const managers = nodes.nodes.filter((n) => n.role === 1 && n.managerStatus?.addr);
  const pick = managers.find((n) => n.id === self) ?? managers.find((n) => n.managerStatus?.leader) ?? managers[0];
  return pick?.managerStatus?.addr ?? '<manager address>';
}

export function joinInstructions(role: 'worker' | 'manager', token: string, addr: string): string {
  return `To add a ${role} to this cluster, run the following command:\n\n    gantry join --token ${token} ${addr}\n\n`;
}

const init: Command = {
  path: ['init'],
  summary: 'Make this host a cluster of one manager',
  usage: 'gantry init [OPTIONS]',
  flags: [
    { name: 'advertise-addr', kind: 'string', help: 'address other nodes reach this manager at (IP or IP:PORT)' },
    { name: 'listen-addr', kind: 'string', help: 'address to listen on (IP:PORT)' },
    { name: 'force-new-cluster', kind: 'bool', help: 'start a new one-manager cluster from this manager\'s state' },
    { name: 'autolock', kind: 'bool', help: 'lock managers at rest: a restarted manager needs `gantry cluster unlock`' },
  ],
  async run(args, ctx) {
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument "${args.positionals[0]}"`);
    const res = await local(ctx).init({
      advertiseAddr: str(args, 'advertise-addr') ?? '',
      listenAddr: str(args, 'listen-addr') ?? '',
      forceNewCluster: bool(args, 'force-new-cluster'),
      autolock: bool(args, 'autolock'),
    });
    ctx.out.write(`Cluster initialized: current node (${res.nodeId}) is now a manager.\n\n`);
    if (res.workerJoinCommand) {
      ctx.out.write(`To add a worker to this cluster, run the following command:\n\n    ${res.workerJoinCommand}\n\n`);
    }
    ctx.out.write("To add a manager to this cluster, run 'gantry join-token manager' and follow the instructions.\n");
    if (bool(args, 'autolock')) ctx.out.write(`\n${unlockKeyInstructions((await autolock(ctx).unlockKey(false)).key)}`);
    return 0;
  },
};

const join: Command = {
  path: ['join'],
  summary: 'Join this host to a cluster',
  usage: 'gantry join --token TOKEN [OPTIONS] HOST:PORT',
  flags: [
    { name: 'token', kind: 'string', help: 'the join token (gantry join-token worker|manager prints it)' },
    { name: 'advertise-addr', kind: 'string', help: 'address other nodes reach this host at' },
    { name: 'listen-addr', kind: 'string', help: 'address to listen on (managers)' },
  ],
  async run(args, ctx) {
    const token = str(args, 'token');
    if (!token) throw new UsageError('--token is required (run gantry join-token worker on a manager)');
    if (args.positionals.length !== 1) throw new UsageError("give the manager's address: gantry join --token TOKEN HOST:PORT");
    await local(ctx).join({
      token,
      remoteAddr: args.positionals[0],
      advertiseAddr: str(args, 'advertise-addr') ?? '',
      listenAddr: str(args, 'listen-addr') ?? '',
    });
    const role = token.trim().endsWith('-m') ? 'manager' : 'worker';
    ctx.out.write(`This node joined a cluster as a ${role}.\n`);
    return 0;
  },
};

const leave: Command = {
  path: ['leave'],
  summary: 'Leave the cluster',
  usage: 'gantry leave [OPTIONS]',
  flags: [{ name: 'force', short: 'f', kind: 'bool', help: 'leave even as a manager (the last manager dissolves the cluster)' }],
  async run(args, ctx) {
    await local(ctx).leave(bool(args, 'force'));
    ctx.out.write('Node left the cluster.\n');
    return 0;
  },
};

const joinToken: Command = {
  path: ['join-token'],
  summary: 'Print (or rotate) the join token for workers or managers',
  usage: 'gantry join-token [OPTIONS] worker|manager',
  flags: [
    { name: 'rotate', kind: 'bool', help: 'replace the token (joined nodes are unaffected)' },
    { name: 'quiet', short: 'q', kind: 'bool', help: 'print only the token' },
  ],
  async run(args, ctx) {
    const role = args.positionals[0];
    if (args.positionals.length !== 1 || (role !== 'worker' && role !== 'manager')) {
      throw new UsageError('say which token: gantry join-token worker|manager');
    }
    const api = control(ctx);
    const cluster = bool(args, 'rotate')
      ? await api.rotateJoinToken({ worker: role === 'worker', manager: role === 'manager' })
      : await api.getCluster();
    const token = (role === 'worker' ? cluster.joinTokens?.worker : cluster.joinTokens?.manager) ?? '';
    if (bool(args, 'quiet')) {
      ctx.out.write(`${token}\n`);
      return 0;
    }
    if (bool(args, 'rotate')) ctx.out.write(`Successfully rotated ${role} join token.\n\n`);
    ctx.out.write(joinInstructions(role, token, await managerAddr(api, ctx)));
    return 0;
  },
};

const ROLE = ['worker', 'manager'];

const info: Command = {
  path: ['info'],
  summary: 'Show what this host is in the cluster',
  usage: 'gantry info [OPTIONS]',
  flags: [FORMAT_FLAG],
  async run(args, ctx) {
    const format = outputFormat(args);
    const i = await local(ctx).info();
    let cluster: Record<string, unknown> | undefined;
    if (i.role === 1 && i.state === 'active') {
      try {
        const api = control(ctx);
        const [nodes, services] = await Promise.all([api.listNodes(), api.listServices()]);
        const ready = nodes.nodes.filter((n) => n.status?.state === 2);
        cluster = {
          nodes: nodes.nodes.length,
          nodesReady: ready.length,
          managers: nodes.nodes.filter((n) => n.role === 1).length,
          services: services.services.length,
          cpus: ready.reduce((a, n) => a + (n.description?.resources?.nanoCpus ?? 0), 0) / 1e9,
          memoryBytes: ready.reduce((a, n) => a + (n.description?.resources?.memoryBytes ?? 0), 0),
        };
      } catch (e) {
        cluster = { error: (e as Error).message };
      }
    }
    if (format === 'json') {
      ctx.out.write(json({ ...i, role: ROLE[i.role] ?? i.role, cluster }));
      return 0;
    }
    const lines = [
      `Node ID:       ${i.nodeId || '(none)'}`,
      `Hostname:      ${i.hostname}`,
      `Cluster:       ${i.state || 'inactive'}${i.clusterId ? ` (${i.clusterId})` : ''}`,
    ];
    if (i.state === 'active') {
      lines.push(`Role:          ${ROLE[i.role] ?? i.role}${i.isLeader ? ' (leader)' : ''}`);
      if (i.managers.length > 0) lines.push(`Managers:      ${i.managers.join(', ')}`);
      if (i.sessionManager) lines.push(`Session on:    ${i.sessionManager}`);
    }
    lines.push(`Runtime:       ${i.runtime}`, `Data dir:      ${i.dataDir}`);
    if (cluster && 'error' in cluster) lines.push(`Cluster state: unavailable: ${cluster.error}`);
    else if (cluster) {
      lines.push(
        `Nodes:         ${cluster.nodes} (${cluster.nodesReady} ready, ${cluster.managers} manager${cluster.managers === 1 ? '' : 's'})`,
        `Services:      ${cluster.services}`,
        `Capacity:      ${cluster.cpus} CPUs, ${formatBytes(cluster.memoryBytes as number)} memory (ready nodes)`,
      );
    }
    if (i.state === 'locked') lines.push('', 'This manager is locked: run `gantry cluster unlock` and give the unlock key.');
    else if (i.state === 'pending') lines.push('', 'This host is joining its cluster: it becomes active once its manager accepts it.');
    else if (i.state !== 'active') lines.push('', 'This host is not in a cluster: run gantry init, or gantry join --token TOKEN HOST:PORT.');
    ctx.out.write(lines.join('\n') + '\n');
    return 0;
  },
};

export const commands: Command[] = [init, join, leave, joinToken, info];
