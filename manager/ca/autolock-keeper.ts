// Every running manager keeps its keys at rest in step with the cluster's unlock key
// (Cluster.unlock_key_sealed): wrapped with it when autolock is on, re-wrapped when it is rotated,
// in clear when it is turned off. Turning autolock on/off and rotating write that field.
import type { Store } from '../store/types.ts';
import { keysAtRestAction, newUnlockKey, sealUnlockKey, unsealUnlockKey } from './autolock.ts';
import { writeClusterKeyClear, writeClusterKeyLocked } from './autolock-files.ts';

export interface AutolockKeeperOptions {
  store: Pick<Store, 'view' | 'subscribe' | 'commit' | 'waitFor'>;
  clusterKey: Buffer;
  dataDir: string;
  /** What this manager's files are wrapped with now: undefined = in clear, null = not known. */
  atRest: string | undefined | null;
  log: (m: string) => void;
  /** Keeps this manager's TLS key at rest sealed with the cluster key (autolock on) or in clear (undefined). */
  tlsKeyAtRest?: (sealWith: Buffer | undefined) => Promise<void>;
}

export class AutolockKeeper {
  private readonly opts: AutolockKeeperOptions;
  private atRest: string | undefined | null;
  private chain: Promise<void> = Promise.resolve();
  private unsubscribe: (() => void) | undefined;
  private stopped = false;

  constructor(opts: AutolockKeeperOptions) {
    this.opts = opts;
    this.atRest = opts.atRest;
  }

  /** Brings the files in step with the cluster now, then follows its changes. */
  async start(): Promise<void> {
    this.unsubscribe = this.opts.store.subscribe((events) => {
      if (events.some((e) => e.kind === 'clusters')) void this.apply();
    });
    await this.apply();
  }

  stop(): void {
    this.stopped = true;
    this.unsubscribe?.();
  }

  /** The cluster's unlock key (undefined: autolock is off). */
  unlockKey(): string | undefined {
    return unsealUnlockKey(this.opts.clusterKey, this.opts.store.view().cluster()?.unlockKeySealed);
  }

  /** Autolock on with a new key (`rotate`, or turning it on), or off (undefined); returns once this manager's files follow. */
  async setUnlockKey(key: string | undefined): Promise<void> {
    const sealed = key === undefined ? Buffer.alloc(0) : sealUnlockKey(this.opts.clusterKey, key);
    const { store } = this.opts;
    for (let attempt = 0; attempt < 10; attempt++) {
      const cluster = store.view().cluster();
      if (!cluster) throw new Error('this manager sees no cluster object yet: retry in a moment');
      const res = await store.commit([{ op: 'update', kind: 'clusters', object: { ...cluster, unlockKeySealed: sealed } }]);
      if (res.ok) {
        await store.waitFor(res.revision);
        return this.apply();
      }
      await store.waitFor(store.view().revision + 1).catch(() => {});
    }
    throw new Error('updating the unlock key: the cluster object kept changing; retry');
  }

  /** Turns autolock on (a new key unless it is on already) or off; returns the key in force. */
  async setAutolock(enabled: boolean): Promise<string | undefined> {
    const current = this.unlockKey();
    if (enabled && current) return current;
    if (!enabled && !current) return undefined;
    const next = enabled ? newUnlockKey() : undefined;
    await this.setUnlockKey(next);
    return next;
  }

  /** Serialized: one rewrite of the files at a time, the last one reflecting the latest cluster. */
  apply(): Promise<void> {
    const run = this.chain.then(() => this.applyOnce());
    this.chain = run.catch((err) => this.opts.log(`autolock: updating this manager's keys at rest failed: ${(err as Error).message}`));
    return run;
  }

  private async applyOnce(): Promise<void> {
    if (this.stopped) return;
    const cluster = this.opts.store.view().cluster();
    // no cluster object seen yet: keep the key (in clear, as without autolock) until it shows up
    const want = cluster ? this.unlockKey() : undefined;
    const action = keysAtRestAction(want, this.atRest);
    const tls = () => this.opts.tlsKeyAtRest?.(want === undefined ? undefined : this.opts.clusterKey);
    // a crash between the two writes leaves "cluster key wrapped, TLS key in clear": unlock handles it
    if (action === 'wrap') {
      await writeClusterKeyLocked(this.opts.dataDir, want as string, this.opts.clusterKey);
      await tls();
    } else if (action === 'clear') {
      await tls();
      await writeClusterKeyClear(this.opts.dataDir, this.opts.clusterKey);
    } else await tls(); // e.g. a manager whose TLS key was still in clear
    if (action === 'none') return;
    const before = this.atRest;
    this.atRest = want;
    if (before !== null || action === 'wrap') {
      this.opts.log(action === 'wrap' ? 'autolock: this manager\'s keys at rest (cluster key, TLS key) are wrapped with the current unlock key' : 'autolock: off; this manager\'s keys are kept in clear');
    }
  }
}
