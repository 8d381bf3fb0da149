// This host's TLS identity for gantryd: its key and certificate (manager/ca/node-certs.ts on disk),
// the client credentials every dial to a manager uses, the server credentials a manager's listener
// uses (updated in place), and renewal at a random point between 50% and 80% of the lifetime.
import { rm } from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { DispatcherClient, type RenewCertificateResponse } from '../../proto/gen/gantry/v1/dispatcher.ts';
import { certsDir, loadClusterKey, loadNodeCerts, saveClusterKey, saveNodeCerts } from '../../manager/ca/node-certs.ts';
import { identityOf, type Identity, newKeyAndCsr, renewalTime } from '../../manager/ca/pki.ts';
import { ClusterServerCredentials, clientCredentials, TLS_CHANNEL_OPTIONS, type TlsMaterial } from '../../manager/ca/tls.ts';

export interface NodeTlsOptions {
  dataDir: string;
  log: (m: string) => void;
  random?: () => number;
  now?: () => number;
}

export class NodeTls {
  readonly serverCredentials = new ClusterServerCredentials();
  private readonly opts: NodeTlsOptions;
  private material: TlsMaterial | undefined;
  private key: Buffer | undefined;
  private timer: NodeJS.Timeout | undefined;
  private managers: () => string[] = () => [];
  private onRenewed: ((id: Identity) => void) | undefined;

  constructor(opts: NodeTlsOptions) {
    this.opts = opts;
  }

  /** Reads this host's certificate and (managers) cluster key; false when it has none yet. */
  async load(): Promise<boolean> {
    this.material = await loadNodeCerts(this.opts.dataDir);
    this.key = await loadClusterKey(this.opts.dataDir);
    if (this.material) this.serverCredentials.update(this.material);
    return this.material !== undefined;
  }

  async set(m: TlsMaterial): Promise<void> {
    await saveNodeCerts(this.opts.dataDir, m);
    this.material = m;
    this.serverCredentials.update(m);
    this.schedule();
  }

  async setClusterKey(key: Buffer): Promise<void> {
    await saveClusterKey(this.opts.dataDir, key);
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
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.managers = () => [];
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
        await this.set({ keyPem, certPem: Buffer.from(res.certificate).toString(), caPem: Buffer.from(res.rootCaCert).toString() || m.caPem });
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
