// This host's TLS identity for gantryd: its key and certificate (manager/ca/node-certs.ts on disk),
// the client credentials every dial to a manager uses, the server credentials a manager's listener
// uses (updated in place), and renewal at a random point between 50% and 80% of the lifetime; and
// the cluster's trust state, waited on (CaNode.WatchRoots): a root rotation renews at once.
import { rm } from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { CaNodeClient, type RootsState } from '../../proto/gen/gantry/v1/ca.ts';
import { DispatcherClient, type RenewCertificateResponse } from '../../proto/gen/gantry/v1/dispatcher.ts';
import { splitPem } from '../../manager/ca/identity.ts';
import { extendChain, issuerDigest } from '../../manager/ca/rotation.ts';
import { certsDir, loadClusterKey, loadNodeCerts, saveClusterKey, saveNodeCerts } from '../../manager/ca/node-certs.ts';
import { identityOf, type Identity, newKeyAndCsr, renewalTime } from '../../manager/ca/pki.ts';
import { ClusterServerCredentials, clientCredentials, TLS_CHANNEL_OPTIONS, type TlsMaterial } from '../../manager/ca/tls.ts';
import { loadCertsOfLockedKey, writeCertsOnly, writeRuntimeKey, writeTlsKeyAtRest } from '../../manager/ca/autolock-files.ts';

export interface NodeTlsOptions {
  dataDir: string;
  log: (m: string) => void;
  random?: () => number;
  now?: () => number;
  /** Where etcd reads this host's key in clear while gantryd runs (off the disk, e.g. /run); default <certs>/key.pem. */
  runtimeKeyFile?: string;
}

export class NodeTls {
  readonly serverCredentials = new ClusterServerCredentials();
  private readonly opts: NodeTlsOptions;
  private material: TlsMaterial | undefined;
  private key: Buffer | undefined;
  private timer: NodeJS.Timeout | undefined;
  private managers: () => string[] = () => [];
  private onRenewed: ((id: Identity) => void) | undefined;
  /** Autolock: the cluster key key.pem is sealed with (undefined: in clear; null: sealed, locked). */
  private keyAtRest: Buffer | undefined | null = undefined;
  private lockedParts: { certPem: string; caPem: string } | undefined;
  private renewing: Promise<void> | undefined;
  /** The last certificate install (set or renewal): the next one waits for it. */
  private installing: Promise<unknown> = Promise.resolve();
  private watching = 0;
  private watchCall: grpc.ClientUnaryCall | undefined;
  /** The client of the long poll, kept while this host's certificate and the manager stay the same. */
  private watcher: { client: InstanceType<typeof CaNodeClient>; material: TlsMaterial; addr: string } | undefined;

  constructor(opts: NodeTlsOptions) {
    this.opts = opts;
  }

  /** Reads this host's certificate and (managers) cluster key; false when it has none yet. */
  async load(): Promise<boolean> {
    this.material = await loadNodeCerts(this.opts.dataDir);
    this.key = await loadClusterKey(this.opts.dataDir);
    if (!this.material) {
      this.lockedParts = await loadCertsOfLockedKey(this.opts.dataDir);
      if (this.lockedParts) this.keyAtRest = null;
    }
    if (this.material) {
      this.serverCredentials.update(this.material);
      await this.writeRuntimeKey();
    }
    return this.material !== undefined;
  }

  /** Autolock: this host's key is on disk only wrapped and not unlocked yet. */
  keyLocked(): boolean {
    return this.keyAtRest === null;
  }

  /** Autolock: the key read from key.pem.locked with the cluster key that sealed it. */
  async unlockKey(keyPem: string, sealedWith: Buffer): Promise<void> {
    if (!this.lockedParts) throw new Error('this host has no wrapped key to unlock');
    this.material = { ...this.lockedParts, keyPem };
    this.keyAtRest = sealedWith;
    this.serverCredentials.update(this.material);
    await this.writeRuntimeKey();
  }

  /** Autolock: key.pem sealed with `clusterKey` from now on (undefined: in clear). */
  async setKeyAtRest(clusterKey: Buffer | undefined): Promise<void> {
    const same = clusterKey === undefined ? this.keyAtRest === undefined : this.keyAtRest instanceof Buffer && this.keyAtRest.equals(clusterKey);
    if (same) return;
    if (!this.material) {
      this.keyAtRest = clusterKey; // no key yet: set() writes the first one this way
      return;
    }
    await writeTlsKeyAtRest(this.opts.dataDir, this.material.keyPem, clusterKey);
    this.keyAtRest = clusterKey;
  }

  /** The key file etcd reads (peer and client TLS). */
  etcdKeyFile(): string {
    return this.opts.runtimeKeyFile ?? path.join(certsDir(this.opts.dataDir), 'key.pem');
  }

  private async writeRuntimeKey(): Promise<void> {
    if (this.material && this.opts.runtimeKeyFile) await writeRuntimeKey(this.opts.runtimeKeyFile, this.material.keyPem);
  }

  /** gantryd stops: the clear copy etcd read goes (the data dir keeps the key as autolock wants it). */
  async dropRuntimeKey(): Promise<void> {
    if (this.opts.runtimeKeyFile) await rm(this.opts.runtimeKeyFile, { force: true });
  }

  async set(given: TlsMaterial): Promise<void> {
    await this.install(given);
  }

  /**
   * Installs certificates one at a time. With `unlessChangedFrom`, only if nothing else installed
   * a certificate since that one was read: a renewal started as a worker must not overwrite the
   * manager certificate a promotion installed while the renewal was on the wire.
   */
  private install(given: TlsMaterial, unlessChangedFrom?: TlsMaterial): Promise<boolean> {
    const done = this.installing.then(async () => {
      if (unlessChangedFrom && this.material !== unlessChangedFrom) return false;
      const m = { ...given, certPem: extendChain(given.certPem, this.material?.certPem, (this.opts.now ?? Date.now)()) };
      if (this.keyAtRest instanceof Buffer) {
        // autolock: the key only wrapped on disk
        await writeTlsKeyAtRest(this.opts.dataDir, m.keyPem, this.keyAtRest);
        await writeCertsOnly(this.opts.dataDir, m.certPem, m.caPem);
      } else await saveNodeCerts(this.opts.dataDir, m);
      this.material = m;
      await this.writeRuntimeKey();
      this.serverCredentials.update(m);
      this.schedule();
      return true;
    });
    this.installing = done.catch(() => false);
    return done;
  }

  async setClusterKey(key: Buffer): Promise<void> {
    await saveClusterKey(this.opts.dataDir, key);
    this.key = key;
  }

  /** The cluster key in memory only: autolock keeps it on disk wrapped (manager/ca/autolock-keeper.ts). */
  useClusterKey(key: Buffer): void {
    this.key = key;
  }

  /** A demoted manager keeps no cluster key. */
  async forgetClusterKey(): Promise<void> {
    this.key = undefined;
    await rm(path.join(certsDir(this.opts.dataDir), 'cluster.key'), { force: true });
  }

  clusterKey(): Buffer | undefined {
    return this.key;
  }

  current(): TlsMaterial | undefined {
    return this.material;
  }

  identity(): Identity | undefined {
    return this.material ? identityOf(this.material.certPem) : undefined;
  }

  /** Credentials and channel options to dial a manager with this host's certificate. */
  dial(): { credentials: grpc.ChannelCredentials; options: grpc.ChannelOptions } {
    const m = this.material;
    if (!m) throw new Error('this host has no certificate yet: join a cluster first');
    return { credentials: clientCredentials(m), options: TLS_CHANNEL_OPTIONS };
  }

  /** Renews by itself from now on, asking any of `managers()`. */
  startRenewal(managers: () => string[], onRenewed?: (id: Identity) => void): void {
    this.managers = managers;
    this.onRenewed = onRenewed;
    this.schedule();
    const gen = ++this.watching;
    void this.watchRoots(gen);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.managers = () => [];
    this.watching++;
    this.watchCall?.cancel();
    this.dropWatcher();
  }

  private dropWatcher(): void {
    this.watcher?.client.close();
    this.watcher = undefined;
  }

  /** A client for the long poll: a new connection only when our certificate or the manager changed (the manager sees the certificate at the handshake). */
  private watchClientFor(addr: string): InstanceType<typeof CaNodeClient> {
    const m = this.material;
    if (this.watcher && this.watcher.material === m && this.watcher.addr === addr) return this.watcher.client;
    this.dropWatcher();
    const { credentials, options } = this.dial();
    const client = new CaNodeClient(addr, credentials, { ...options, 'grpc.use_local_subchannel_pool': 1 });
    this.watcher = { client, material: m as TlsMaterial, addr };
    return client;
  }

  /**
   * Waits on the cluster's trust state at one manager after another (a long poll): new roots are
   * trusted at once, and a certificate not from the signing root (a root rotation) is renewed at once.
   */
  private async watchRoots(gen: number): Promise<void> {
    let known = '';
    let turn = 0;
    let failures = 0;
    while (this.watching === gen) {
      const addrs = this.managers();
      if (addrs.length === 0 || !this.material) {
        await sleep(1000);
        continue;
      }
      const addr = addrs[turn % addrs.length];
      try {
        const client = this.watchClientFor(addr);
        let st: RootsState;
        try {
          st = await new Promise<RootsState>((resolve, reject) => {
            this.watchCall = client.watchRoots({ knownDigest: known, waitMs: WATCH_WAIT_MS }, new grpc.Metadata(), { deadline: Date.now() + WATCH_WAIT_MS + 10_000 }, (err, r) =>
              err ? reject(err) : resolve(r),
            );
          });
        } finally {
          this.watchCall = undefined;
        }
        if (this.watching !== gen) return;
        await this.applyRoots(st);
        known = st.digest;
        failures = 0;
      } catch (err) {
        if (this.watching !== gen) return;
        this.dropWatcher();
        turn++;
        failures++;
        if (failures % 10 === 1) this.opts.log(`tls: watching the cluster's root CA at ${addr}: ${(err as grpc.ServiceError).details || (err as Error).message}; retrying`);
        await sleep(Math.min(5000, 500 * failures));
      }
    }
  }

  private async applyRoots(st: RootsState): Promise<void> {
    const m = this.material;
    const roots = Buffer.from(st.roots).toString();
    if (!m || !roots) return;
    if (m.caPem !== roots) {
      await this.set({ ...m, caPem: roots });
      this.opts.log(`tls: trusting ${splitPem(roots).length} root CA(s) of the cluster now`);
    }
    const mine = issuerDigest(this.material?.certPem ?? m.certPem, splitPem(roots));
    if (st.signingDigest && mine !== st.signingDigest) {
      this.opts.log(`tls: the cluster's root CA changed (sha256:${st.signingDigest.slice(0, 16)}…): renewing this node's certificate now`);
      await this.renew();
      this.schedule();
    }
  }

  private schedule(delayMs?: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const id = this.identity();
    if (!id || this.managers().length === 0) return;
    const now = (this.opts.now ?? Date.now)();
    const at = renewalTime(id.notBefore, id.notAfter, (this.opts.random ?? Math.random)());
    const wait = delayMs ?? Math.max(0, at - now);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.renew().then(
        () => this.schedule(),
        (err) => {
          const left = id.notAfter - (this.opts.now ?? Date.now)();
          this.opts.log(`tls: renewing this node's certificate failed: ${(err as Error).message}; retrying`);
          this.schedule(Math.max(1000, Math.min(60_000, left / 10)));
        },
      );
    }, Math.min(wait, 2 ** 31 - 1));
    this.timer.unref();
  }

  /** Asks a manager for a new certificate of a new key; the role comes from the store there. */
  async renew(): Promise<void> {
    this.renewing ??= this.renewOnce().finally(() => {
      this.renewing = undefined;
    });
    return this.renewing;
  }

  private async renewOnce(): Promise<void> {
    const m = this.material;
    if (!m) throw new Error('no certificate to renew');
    const { keyPem, csrPem } = await newKeyAndCsr();
    let lastErr: unknown;
    for (const addr of this.managers()) {
      const { credentials, options } = this.dial();
      const client = new DispatcherClient(addr, credentials, options);
      try {
        const res = await new Promise<RenewCertificateResponse>((resolve, reject) =>
          client.renewCertificate({ csr: Buffer.from(csrPem) }, new grpc.Metadata(), { deadline: Date.now() + 15_000 }, (err, r) => (err ? reject(err) : resolve(r))),
        );
        const installed = await this.install({ keyPem, certPem: Buffer.from(res.certificate).toString(), caPem: Buffer.from(res.rootCaCert).toString() || m.caPem }, m);
        if (!installed) {
          this.opts.log('tls: a renewal was overtaken by a newer certificate (a promotion or demotion): kept the newer one');
          return;
        }
        const id = this.identity();
        this.opts.log(`tls: renewed this node's certificate (${id?.role}, valid until ${id ? new Date(id.notAfter).toISOString() : '?'})`);
        if (id) this.onRenewed?.(id);
        return;
      } catch (err) {
        lastErr = err;
      } finally {
        client.close();
      }
    }
    throw lastErr instanceof Error ? new Error((lastErr as grpc.ServiceError).details || lastErr.message) : new Error('no manager known');
  }
}

const WATCH_WAIT_MS = 25_000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
