// The Controller a task runner drives (prepare → start → wait → shutdown → remove), and its
// implementation over a Runtime and the image store. Every method is safe to call again.
import type { Task } from '../../proto/gen/gantry/v1/objects.ts';
import type { ContainerState, Runtime } from '../runtime/types.ts';
import { containerConfigFor, type ImageConfigLike, imageRef, type NetworkAttachmentResult, stopGraceMs } from './container-config.ts';
import { type Health, healthSpecFor, type ImageHealthcheck, monitorHealth } from './health.ts';

export interface Controller {
  /** Image present, container created (not started). */
  prepare(signal?: AbortSignal): Promise<void>;
  start(): Promise<void>;
  /** Resolves when the container exits; rejects when signal aborts. */
  wait(signal?: AbortSignal): Promise<ContainerState>;
  /** Stops the container if there is one (stop signal, SIGKILL after graceMs). */
  shutdown(graceMs: number): Promise<ContainerState | undefined>;
  /** Deletes the container and everything it held. */
  remove(): Promise<void>;
  /** A health check applies (the task's, else the image's): RUNNING is reported with health "starting". */
  hasHealthcheck?(): boolean;
}

/**
 * What the task manager needs from the image store (worker/image/store.ts's ImageStore fits).
 * I is the store's image handle, passed back to it untouched.
 */
// biome-ignore lint/suspicious/noExplicitAny: the handle type is the store's own; any lets ImageStore's wider params fit
export interface TaskImages<I extends { id: string } = any> {
  resolveLocal(ref: string): Promise<I | undefined>;
  pull(ref: string, opts?: { signal?: AbortSignal }): Promise<I>;
  imageConfig(info: I): Promise<ImageConfigLike>;
  snapshotDirs(info: I): Promise<string[]>;
  markInUse?(imageId: string, containerId: string): Promise<void>;
  release?(containerId: string): Promise<void>;
}

/** Optional hook for the network code: a netns and /etc files per task, released on remove. */
export interface TaskNetworks {
  attach(task: Task): Promise<NetworkAttachmentResult>;
  detach(taskId: string): Promise<void>;
  /** Before a running container is stopped: until the task is out of its services' VIPs and names. */
  drain?(taskId: string): Promise<void>;
}

/** An error that is worth retrying (the runner backs off) instead of rejecting/failing the task. */
export class TemporaryError extends Error {
  override name = 'TemporaryError';
}

export interface HealthDeps {
  now(): number;
  after(ms: number, fn: () => void): () => void;
  onHealth(h: Health, output: string): void;
}

export class ContainerController implements Controller {
  private readonly task: () => Task;
  private readonly runtime: Runtime;
  private readonly images: TaskImages;
  private readonly networks: TaskNetworks | undefined;
  private readonly health: HealthDeps | undefined;
  /** The image's HEALTHCHECK, learned at prepare (not known for containers re-adopted after a restart). */
  private imageHealth: ImageHealthcheck | undefined;

  constructor(deps: { task: () => Task; runtime: Runtime; images: TaskImages; networks?: TaskNetworks; health?: HealthDeps }) {
    this.task = deps.task;
    this.runtime = deps.runtime;
    this.images = deps.images;
    this.networks = deps.networks;
    this.health = deps.health;
  }

  private get id(): string {
    return this.task().id;
  }

  async prepare(signal?: AbortSignal): Promise<void> {
    const existing = await this.runtime.state(this.id);
    if (existing.status === 'created') return; // made before a gantryd restart
    if (existing.status !== 'unknown') await this.runtime.remove(this.id);
    const task = this.task();
    const ref = imageRef(task);
    if (!ref) throw new Error(`task ${task.id} names no image`);
    const info = (await this.images.resolveLocal(ref)) ?? (await this.images.pull(ref, { signal }));
    const cfg = await this.images.imageConfig(info);
    this.imageHealth = (cfg as { Healthcheck?: ImageHealthcheck }).Healthcheck;
    const dirs = await this.images.snapshotDirs(info);
    const net = this.networks ? await this.networks.attach(task) : undefined;
    try {
      const built = containerConfigFor(task, cfg, dirs, net);
      if (!built.ok) throw new Error(built.error);
      await this.runtime.create(built.config);
    } catch (e) {
      await this.networks?.detach(this.id).catch(() => {}); // a rejected task holds no netns
      throw e;
    }
    await this.images.markInUse?.(info.id, this.id);
  }

  /** Starts at once (asking the runtime's state costs a process per task); a refusal is explained by the state. */
  async start(): Promise<void> {
    try {
      await this.runtime.start(this.id);
    } catch (e) {
      const st = await this.runtime.state(this.id);
      if (st.status === 'running' || (st.status === 'stopped' && st.startedAt)) return; // started before a restart
      if (st.status === 'unknown') throw new Error(`container for task ${this.id} is gone (it was removed while gantryd was down)`);
      throw e;
    }
  }

  hasHealthcheck(): boolean {
    return this.health !== undefined && healthSpecFor(this.task(), this.imageHealth) !== undefined;
  }

  /** The container's exit; with a health check, an unhealthy container is stopped and this throws. */
  async wait(signal?: AbortSignal): Promise<ContainerState> {
    const spec = this.health ? healthSpecFor(this.task(), this.imageHealth) : undefined;
    if (!spec || !this.health) return this.runtime.wait(this.id, signal);
    const h = this.health;
    const ac = new AbortController();
    const stop = () => ac.abort(signal?.reason);
    signal?.addEventListener('abort', stop, { once: true });
    try {
      const exited = this.runtime.wait(this.id, ac.signal).then((st) => ({ st }));
      const sick = monitorHealth({
        spec, exec: (args, t) => this.runtime.exec(this.id, args, t), now: h.now, after: h.after, onHealth: h.onHealth, signal: ac.signal,
      }).then((r) => (r === 'unhealthy' ? { unhealthy: true as const } : new Promise<never>(() => {})));
      const r = await Promise.race([exited, sick]);
      if ('st' in r) return r.st;
      ac.abort();
      await this.runtime.stop(this.id, stopGraceMs(this.task()));
      throw new Error('task: unhealthy container');
    } finally {
      signal?.removeEventListener('abort', stop);
      ac.abort();
    }
  }

  async shutdown(graceMs: number): Promise<ContainerState | undefined> {
    const st = await this.runtime.state(this.id);
    if (st.status === 'unknown') return undefined;
    if (st.status === 'running') await this.networks?.drain?.(this.id);
    return this.runtime.stop(this.id, graceMs);
  }

  async remove(): Promise<void> {
    await this.runtime.remove(this.id);
    await this.images.release?.(this.id);
    await this.networks?.detach(this.id);
  }
}
