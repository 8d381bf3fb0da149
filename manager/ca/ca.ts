// The cluster CA as a manager runs it: the root (certificate in the Cluster object, key sealed
// there with the cluster key), issuance for joins, renewals, promotions and operators, and the
// revocation list (Cluster.revoked) that a removed node's identity goes onto.
import { X509Certificate } from 'node:crypto';
import type { Cluster } from '../../proto/gen/gantry/v1/objects.ts';
import { newJoinToken } from '../dispatcher/tokens.ts';
import { newId } from '../ids.ts';
import type { Store } from '../store/types.ts';
import { type CertRole, createRootCa, crossSign, DEFAULT_NODE_CERT_LIFETIME_MS, issue, type RootCa } from './pki.ts';
import { derDigest, finishedBundle, type NodeCertReport, parseRootBundle, type RootBundle, rotatingBundle } from './rotation.ts';
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

/** A rotation refused (one is under way, or the cluster changed meanwhile): the message says what to do. */
export class RotationError extends Error {
  override name = 'RotationError';
}

export class ClusterCa {
  private readonly store: Store;
  private readonly clusterKey: Buffer;
  private readonly now: () => number;
  private cached: { sealed: Buffer; bundle: string; root: RootCa } | undefined;
  /** Which root signed the certificate each node last presented to this manager (CaNode.WatchRoots). */
  private readonly reports = new Map<string, NodeCertReport>();

  constructor(opts: { store: Store; clusterKey: Buffer; now?: () => number }) {
    this.store = opts.store;
    this.clusterKey = opts.clusterKey;
    this.now = opts.now ?? Date.now;
  }

  private root(): { root: RootCa; cluster: Cluster } {
    const cluster = this.store.view().cluster();
    if (!cluster?.rootCaKeySealed?.length) throw new CaUnavailableError('this cluster has no root CA key (created before mutual TLS?): recreate it with gantry init');
    const sealed = Buffer.from(cluster.rootCaKeySealed);
    const bundle = Buffer.from(cluster.rootCaCert).toString();
    if (!this.cached?.sealed.equals(sealed) || this.cached.bundle !== bundle) {
      const keyPem = unseal(this.clusterKey, sealed, KEY_CONTEXT).toString();
      // the signing root: the only one, or during a rotation the new one (rotation.ts)
      this.cached = { sealed, bundle, root: { certPem: parseRootBundle(bundle).signing, keyPem } };
    }
    return { root: this.cached.root, cluster };
  }

  /** What Cluster.root_ca_cert says: roots, signing root, cross-signed copy, rotating or not. */
  bundle(): RootBundle {
    return parseRootBundle(this.store.view().cluster()?.rootCaCert);
  }

  /** Every root this cluster trusts (PEM bundle; two during a rotation). */
  rootsPem(): string {
    return this.bundle().roots.join('');
  }

  /** A certificate as issued: during a rotation followed by the cross-signed new root (it chains to the old root too). */
  private withChain(certPem: string): string {
    return certPem + this.bundle().intermediates.join('');
  }

  async issueNode(csrPem: string, nodeId: string, role: 'manager' | 'worker', ips: string[] = []): Promise<string> {
    const { root, cluster } = this.root();
    return this.withChain(await issue(root, csrPem, { id: nodeId, role, clusterId: cluster.id, ips: [...ips, '127.0.0.1'] }, this.now(), nodeCertLifetime(cluster)));
  }

  async issueOperator(csrPem: string, name: string): Promise<{ id: string; certPem: string }> {
    const { root, cluster } = this.root();
    const id = `operator-${name.replace(/[^a-zA-Z0-9_.-]/g, '') || 'cli'}-${newId().slice(0, 8)}`;
    return { id, certPem: this.withChain(await issue(root, csrPem, { id, role: 'operator' as CertRole, clusterId: cluster.id }, this.now(), nodeCertLifetime(cluster))) };
  }

  // -------------------------------------------------------------------------------------------
  // Root rotation (README "Root rotation"): start, note what nodes present, finish.

  /**
   * Starts a rotation: a new root (or the operator's), cross-signed by the old one; the cluster
   * then trusts both and issues from the new one. Returns the old and new roots' digests.
   */
  async startRotation(opts: { certExpiryMs?: number; own?: RootCa } = {}): Promise<{ oldDigest: string; newDigest: string }> {
    const { root: old, cluster } = this.root();
    const b = parseRootBundle(cluster.rootCaCert);
    if (b.rotating) {
      throw new RotationError(`a root CA rotation to sha256:${derDigest(b.signing).slice(0, 16)}… is under way: wait for it (\`gantry cluster ca\` shows which nodes are pending)`);
    }
    const now = this.now();
    const generation = Number(/CN=gantry-root-ca-(\d+)/.exec(new X509Certificate(old.certPem).subject)?.[1] ?? 0) + 1;
    const fresh = opts.own ?? (await createRootCa(cluster.id, now, generation));
    if (derDigest(fresh.certPem) === derDigest(old.certPem)) throw new RotationError('--ca-cert is the current root CA: give a new one');
    const cross = await crossSign(old, fresh.certPem, now);
    const spec = opts.certExpiryMs && cluster.spec ? { ...cluster.spec, nodeCertLifetimeMs: opts.certExpiryMs } : cluster.spec;
    const next: Cluster = {
      ...cluster,
      spec,
      rootCaCert: Buffer.from(rotatingBundle(old.certPem, fresh.certPem, cross)),
      rootCaKeySealed: seal(this.clusterKey, Buffer.from(fresh.keyPem), KEY_CONTEXT),
    };
    const res = await this.store.commit([{ op: 'update', kind: 'clusters', object: next }]);
    if (!res.ok) throw new RotationError('the cluster object changed while the rotation started: run the command again');
    await this.store.waitFor(res.revision);
    return { oldDigest: derDigest(old.certPem), newDigest: derDigest(fresh.certPem) };
  }

  /**
   * Ends a rotation: the old root is no longer trusted and the join tokens carry the new root's
   * digest (new secrets too). Returns false when there was nothing to finish.
   */
  async finishRotation(): Promise<boolean> {
    for (let attempt = 0; attempt < 10; attempt++) {
      const cluster = this.store.view().cluster();
      if (!cluster) return false;
      const b = parseRootBundle(cluster.rootCaCert);
      if (!b.rotating) return false;
      const roots = finishedBundle(b);
      const next: Cluster = {
        ...cluster,
        rootCaCert: Buffer.from(roots),
        joinTokens: { worker: newJoinToken('worker', roots), manager: newJoinToken('manager', roots) },
      };
      const res = await this.store.commit([{ op: 'update', kind: 'clusters', object: next }]);
      if (res.ok) {
        await this.store.waitFor(res.revision);
        return true;
      }
      await this.store.waitFor(this.store.view().revision + 1).catch(() => {});
    }
    throw new RotationError('finishing the root rotation: the cluster object kept changing; it is retried');
  }

  /** A node presented `certPem` (verified by TLS): remember which root signed it. */
  noteCert(nodeId: string, issuerDigest: string): void {
    this.reports.set(nodeId, { nodeId, issuerDigest, atMs: this.now() });
  }

  /** What this manager saw (for the rotation's progress, gathered from every manager). */
  certReports(): NodeCertReport[] {
    return [...this.reports.values()];
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
