// The contract between the worker's task runner and a container runtime (native gantry-exec,
// any runc-compatible binary, or sim). Runtime-agnostic: the runtime builds its own bundle.

/** What a task needs from a container, fully resolved (image config merged with the task spec). */
export interface ContainerConfig {
  id: string;                       // unique per container (the task id)
  /** The root filesystem: overlay over image snapshots (lowest first), or an existing directory. */
  rootfs: { kind: 'layers'; lowerDirs: string[] } | { kind: 'dir'; path: string };
  args: string[];                   // argv, non-empty
  env: string[];                    // K=V
  cwd: string;                      // absolute, default "/"
  user: string;                     // "uid[:gid]" or a name from the image's /etc/passwd; "" = root
  hostname: string;
  tty: boolean;
  readOnlyRootfs: boolean;
  capAdd: string[];                 // CAP_X or X, added to Docker's default set
  capDrop: string[];
  limits: { memoryBytes?: number; nanoCpus?: number; pidsLimit?: number };
  mounts: { type: 'bind' | 'tmpfs'; source: string; target: string; readOnly: boolean }[];
  /** none: its own empty netns with lo; host: the host's; path: join this netns (set up by the network code). */
  network: { mode: 'none' } | { mode: 'host' } | { mode: 'path'; path: string };
  /** Files the runtime must place in the rootfs before start, e.g. /etc/hosts, /etc/resolv.conf. */
  files?: { path: string; content: string; mode?: number }[];
  stopSignal: string;               // e.g. SIGTERM
  labels: Record<string, string>;
  logMaxBytes?: number;
  logMaxFiles?: number;
}

export type ContainerStatus = 'created' | 'running' | 'stopped' | 'unknown';

export interface ContainerState {
  id: string;
  status: ContainerStatus;
  pid: number;                      // 0 when not running
  exitCode?: number;                // set once stopped (128+signal when killed)
  oomKilled?: boolean;
  startedAt?: number;               // ms since the epoch
  finishedAt?: number;
}

export interface LogEntry {
  stream: 'stdout' | 'stderr';
  timeMs: number;
  data: Buffer;
}

export interface LogOptions {
  follow: boolean;
  tail: number;                     // -1 = all
  sinceMs: number;                  // 0 = all
  signal?: AbortSignal;
}

export interface ExecResult {
  exitCode: number;
  output: string;                   // combined stdout+stderr, capped (health-check output)
}

export interface Runtime {
  readonly name: string;            // "native", "runc", "crun", "sim"
  /** Creates the container (rootfs mounted, process created but not started) and its monitor. */
  create(config: ContainerConfig): Promise<void>;
  start(id: string): Promise<void>;
  state(id: string): Promise<ContainerState>;
  /** Resolves when the container has exited (immediately if it already has). */
  wait(id: string, signal?: AbortSignal): Promise<ContainerState>;
  kill(id: string, signal: string): Promise<void>;
  /** stopSignal, then SIGKILL after graceMs; resolves once exited. */
  stop(id: string, graceMs: number): Promise<ContainerState>;
  /** Deletes the container, its rootfs mount and state. Idempotent. */
  remove(id: string): Promise<void>;
  /** Containers this runtime has on this host (for re-adoption after a gantryd restart). */
  list(): Promise<ContainerState[]>;
  logs(id: string, opts: LogOptions): AsyncIterable<LogEntry>;
  /** Runs a command inside the running container (health checks), killed after timeoutMs. */
  exec(id: string, args: string[], timeoutMs: number): Promise<ExecResult>;
}

export class RuntimeError extends Error {
  override name = 'RuntimeError';
}
