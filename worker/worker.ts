// The worker role's composition root: the runtime, the task manager that runs assigned tasks,
// and the agent that holds the dispatcher session. Containers outlive it: stop() leaves them running.
import type { NodeDescription, NodeRole, TaskStatus } from '../proto/gen/gantry/v1/objects.ts';
import path from 'node:path';
import { Agent, type AgentOptions } from './agent/agent.ts';
import { SecretFiles } from './secrets.ts';
import { TaskManager } from './exec/task-manager.ts';
import type { ImageStore } from './image/store.ts';
import { NetworkManager } from './network/manager.ts';
import type { Runtime } from './runtime/types.ts';

export interface WorkerOptions {
  nodeId: string;
  nodeSecret: string;
  managers: string[];
  addr: string;
  stateDir: string;
  runtime: Runtime;
  images: ImageStore;
  description(): NodeDescription;
  log: (m: string) => void;
  onManagers?: (managers: string[]) => void;
  onRoleChange?: (desiredRole: NodeRole) => void;
  /** Where secret/config values go (a tmpfs is mounted there): see worker/secrets.ts. */
  secretsDir?: string;
  /** How the agent dials a manager (mutual TLS): see AgentOptions.dial. */
  dial?: AgentOptions['dial'];
  /** Give containers their own network (netns, bridge, overlays, DNS); off for the sim runtime. */
  network?: boolean;
  /** Where containers' network namespaces are bind-mounted (runtime state: best under the exec root). Default: beside stateDir. */
  netnsDir?: string;
}

export class Worker {
  readonly tasks: TaskManager;
  readonly agent: Agent;
  readonly network: NetworkManager | undefined;
  private readonly secrets: SecretFiles | undefined;

  constructor(opts: WorkerOptions) {
    let agent: Agent | undefined;
    this.secrets = opts.secretsDir ? new SecretFiles(opts.secretsDir, (m) => opts.log(`secrets: ${m}`)) : undefined;
    const network = opts.network ? new NetworkManager({ nodeId: opts.nodeId, log: (m) => opts.log(m), netnsDir: opts.netnsDir ?? path.join(path.dirname(opts.stateDir), 'netns') }) : undefined;
    this.network = network;
    this.tasks = new TaskManager({
      networks: network,
      runtime: opts.runtime,
      images: opts.images,
      stateDir: opts.stateDir,
      clock: { now: () => Date.now() },
      log: (m: string) => opts.log(`tasks: ${m}`),
      onStatus: (taskId: string, status: TaskStatus) => agent?.reportStatus(taskId, status),
    });
    agent = new Agent({
      nodeId: opts.nodeId,
      nodeSecret: opts.nodeSecret,
      managers: opts.managers,
      addr: opts.addr,
      description: opts.description,
      tasks: this.tasks,
      log: (m) => opts.log(`agent: ${m}`),
      onManagers: opts.onManagers,
      onRoleChange: opts.onRoleChange,
      dial: opts.dial,
      secrets: this.secrets,
      onNetworkState: network ? (s) => network.setState(s) : undefined,
    });
    this.agent = agent;
  }

  async start(): Promise<void> {
    await this.network?.start();
    await this.tasks.start();
    this.agent.start();
  }

  /** Ends the session and the task runners; running containers stay (re-adopted at the next start). */
  async stop(): Promise<void> {
    await this.agent.stop();
    await this.tasks.close();
    this.secrets?.close();
    await this.network?.close();
  }
}
