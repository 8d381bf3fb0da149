// The cluster CA as a manager runs it: the root (certificate in the Cluster object, key sealed
// there with the cluster key), issuance for joins, renewals, promotions and operators, and the
// revocation list (Cluster.revoked) that a removed node's identity goes onto.
import type { Cluster } from '../../proto/gen/gantry/v1/objects.ts';
import { newId } from '../ids.ts';
import type { Store } from '../store/types.ts';
import { type CertRole, createRootCa, DEFAULT_NODE_CERT_LIFETIME_MS, issue, type RootCa } from './pki.ts';
import { seal, unseal } from './seal.ts';

const KEY_CONTEXT = 'gantry/root-ca-key';
/** Tests may shorten certificates below Swarm's 1 h minimum; production values are clamped to it. */
const MIN_LIFETIME_MS = Number(process.env.GANTRY_MIN_CERT_LIFETIME_MS || 3600_000);

/** What `gantry init` writes into the new Cluster object. */
export async function bootstrapCa(clusterKey: Buffer, clusterId: string, now: number): Promise<{ root: RootCa; fields: Pick<Cluster, 'rootCaCert' | 'rootCaKeySealed'> }> {
  const root = await createRootCa(clusterId, now);
  return { root, fields: { rootCaCert: Buffer.from(root.certPem), rootCaKeySealed: seal(clusterKey, Buffer.from(root.keyPem), KEY_CONTEXT) } };
}

export function nodeCertLifetime(cluster: Cluster | undefined): number {
  const env = Number(process.env.GANTRY_CERT_LIFETIME_MS || 0);
  const want = cluster?.spec?.nodeCertLifetimeMs || env || DEFAULT_NODE_CERT_LIFETIME_MS;
  return Math.max(MIN_LIFETIME_MS, want);
}

export class CaUnavailableError extends Error {
  override name = 'CaUnavailableError';
}

export class ClusterCa {
  private readonly store: Store;
  private readonly clusterKey: Buffer;
  private readonly now: () => number;
  private cached: { sealed: Buffer; root: RootCa } | undefined;

  constructor(opts: { store: Store; clusterKey: Buffer; now?: () => number }) {
    this.store = opts.store;
    this.clusterKey = opts.clusterKey;
    this.now = opts.now ?? Date.now;
  }

  private root(): { root: RootCa; cluster: Cluster } {
    const cluster = this.store.view().cluster();
    if (!cluster?.rootCaKeySealed?.length) throw new CaUnavailableError('this cluster has no root CA key (created before mutual TLS?): recreate it with gantry init');
    const sealed = Buffer.from(cluster.rootCaKeySealed);
    if (!this.cached?.sealed.equals(sealed)) {
      const keyPem = unseal(this.clusterKey, sealed, KEY_CONTEXT).toString();
      // the signing root is the first certificate of the bundle
      const certPem = Buffer.from(cluster.rootCaCert).toString().match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/)?.[0] ?? '';
      this.cached = { sealed, root: { certPem, keyPem } };
    }
    return { root: this.cached.root, cluster };
  }

  /** Every root this cluster trusts (PEM bundle). */
  rootsPem(): string {
    return Buffer.from(this.store.view().cluster()?.rootCaCert ?? '').toString();
  }

  async issueNode(csrPem: string, nodeId: string, role: 'manager' | 'worker', ips: string[] = []): Promise<string> {
    const { root, cluster } = this.root();
    return issue(root, csrPem, { id: nodeId, role, clusterId: cluster.id, ips: [...ips, '127.0.0.1'] }, this.now(), nodeCertLifetime(cluster));
  }

  async issueOperator(csrPem: string, name: string): Promise<{ id: string; certPem: string }> {
    const { root, cluster } = this.root();
    const id = `operator-${name.replace(/[^a-zA-Z0-9_.-]/g, '') || 'cli'}-${newId().slice(0, 8)}`;
    return { id, certPem: await issue(root, csrPem, { id, role: 'operator' as CertRole, clusterId: cluster.id }, this.now(), nodeCertLifetime(cluster)) };
  }

  /** Puts `id` on the revocation list (idempotent). */
  async revoke(id: string, reason: string): Promise<void> {
    for (let attempt = 0; attempt < 10; attempt++) {
      const cluster = this.store.view().cluster();
      if (!cluster || cluster.revoked.some((r) => r.id === id)) return;
      const res = await this.store.commit([{ op: 'update', kind: 'clusters', object: { ...cluster, revoked: [...cluster.revoked, { id, revokedAt: this.now(), reason }] } }]);
      if (res.ok) return void (await this.store.waitFor(res.revision));
      await this.store.waitFor(this.store.view().revision + 1).catch(() => {});
    }
    throw new Error(`revoking ${id}: the cluster object kept changing; retry`);
  }

  /** Revokes the identity of every node that is removed from the store (`gantry node rm`). */
  watchRemovals(log: (m: string) => void, isLeader: () => boolean): () => void {
    return this.store.subscribe((events) => {
      for (const e of events) {
        if (e.kind === 'nodes' && e.op === 'delete' && isLeader()) {
          void this.revoke(e.id, 'node removed').then(
            () => log(`ca: revoked the certificate of removed node ${e.id}`),
            (err) => log(`ca: revoking node ${e.id}: ${(err as Error).message}`),
          );
        }
      }
    });
  }
}
