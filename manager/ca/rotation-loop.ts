// Root CA rotation as managers run it: CaNode.WatchRoots (nodes wait on the trust state and show
// their certificate), gathering those reports from every manager, and the leader's loop that drops the old root once every node is rotated.
import * as grpc from '@grpc/grpc-js';
import { CaClient, type CaNodeServer, type NodeCertReports, type RootsState } from '../../proto/gen/gantry/v1/ca.ts';
import { NodeRole, NodeState } from '../../proto/gen/gantry/v1/objects.ts';
import type { Store } from '../store/types.ts';
import { peerCertOf } from './authz.ts';
import type { ClusterCa } from './ca.ts';
import { splitPem } from './identity.ts';
import { derDigest, etcdRestartTurn, issuerDigest, mergeReports, type NodeCertReport, type RootBundle, type RotationProgress, rotationProgress, staleEtcdMembers } from './rotation.ts';
import { createHash, X509Certificate } from 'node:crypto';
import { clientCredentials, TLS_CHANNEL_OPTIONS, type TlsMaterial } from './tls.ts';

export interface RotatorDeps {
  ca: ClusterCa;
  store: Store;
  selfId: string;
  /** This manager's own TLS material: it asks the other managers what they saw. */
  tls: () => TlsMaterial;
  isLeader: () => boolean;
  log: (m: string) => void;
  now?: () => number;
  /** How often the leader checks a rotation's progress (default 1 s). */
  intervalMs?: number;
  /** The roots (PEM) this manager's etcd member read when it started. */
  etcdRoots?: string;
  /**
   * The roots file this manager's etcd member reads when it starts, and its restart: a manager
   * whose member is stale restarts it (without them, it waits for an operator's restart).
   */
  etcdMember?: { rootsOnDisk(): Promise<string>; restart(): Promise<void> };
}

/** What one manager answered: what nodes showed it, and the roots its etcd member trusts. */
interface ManagerNotes {
  managerId: string;
  reports: NodeCertReport[];
  etcdRootDigests: string[];
}

export interface RotationView {
  bundle: RootBundle;
  oldDigest: string;
  newDigest: string;
  progress: RotationProgress;
}

const MAX_WAIT_MS = 60_000;

function stateName(s: NodeState | undefined): string {
  switch (s) {
    case NodeState.NODE_STATE_READY:
      return 'ready';
    case NodeState.NODE_STATE_DOWN:
      return 'down';
    case NodeState.NODE_STATE_DISCONNECTED:
      return 'disconnected';
    default:
      return 'unknown';
  }
}

/** What a node compares to know the trust state changed. */
export function rootsStateOf(b: RootBundle): RootsState {
  const roots = b.roots.join('');
  const intermediates = b.intermediates.join('');
  return {
    digest: createHash('sha256').update(roots).update('|').update(intermediates).digest('hex'),
    roots: Buffer.from(roots),
    signingDigest: b.signing ? derDigest(b.signing) : '',
    intermediates: Buffer.from(intermediates),
  };
}

export class RootRotator {
  private readonly deps: RotatorDeps;
  private readonly now: () => number;
  private etcdRoots: string;

  constructor(deps: RotatorDeps) {
    this.deps = deps;
    this.now = deps.now ?? Date.now;
    this.etcdRoots = deps.etcdRoots ?? '';
  }

  /** CaNode: served to every node (authz 'node'). */
  nodeService(): CaNodeServer {
    return {
      watchRoots: (call, cb) => {
        const b = this.deps.ca.bundle();
        const raw = peerCertOf(call);
        const id = raw ? new X509Certificate(raw) : undefined;
        const nodeId = id?.subject.match(/^CN=(.*)$/m)?.[1];
        if (raw && nodeId) this.deps.ca.noteCert(nodeId, issuerDigest(raw, b.roots));
        const known = call.request.knownDigest;
        const now = rootsStateOf(b);
        if (now.digest !== known) return cb(null, now);
        const wait = Math.max(0, Math.min(MAX_WAIT_MS, Number(call.request.waitMs) || 0));
        let done = false;
        const finish = () => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          unsubscribe();
          cb(null, rootsStateOf(this.deps.ca.bundle()));
        };
        const timer = setTimeout(finish, wait);
        const unsubscribe = this.deps.store.subscribe((events) => {
          if (events.some((e) => e.kind === 'clusters') && rootsStateOf(this.deps.ca.bundle()).digest !== known) finish();
        });
        call.on('cancelled', () => {
          done = true;
          clearTimeout(timer);
          unsubscribe();
        });
      },
    };
  }

  /** This manager's answer to Ca.ListNodeCertReports. */
  notes(): NodeCertReports {
    return {
      reports: this.deps.ca.certReports().map((r) => ({ nodeId: r.nodeId, issuerDigest: r.issuerDigest, atMs: r.atMs })),
      etcdRootDigests: splitPem(this.etcdRoots).map(derDigest),
      managerId: this.deps.selfId,
    };
  }

  /** Notes from every manager (this one's own, and the others' over mutual TLS; one that does not answer is skipped). */
  private async gather(): Promise<ManagerNotes[]> {
    const others = this.deps.store
      .view()
      .list('nodes')
      .filter((n) => n.id !== this.deps.selfId && n.role === NodeRole.NODE_ROLE_MANAGER && n.managerStatus?.addr && n.status?.state !== NodeState.NODE_STATE_DOWN)
      .map((n) => n.managerStatus?.addr as string);
    const toNotes = (r: NodeCertReports): ManagerNotes => ({
      managerId: r.managerId,
      reports: r.reports.map((x) => ({ nodeId: x.nodeId, issuerDigest: x.issuerDigest, atMs: Number(x.atMs) })),
      etcdRootDigests: r.etcdRootDigests,
    });
    const lists: ManagerNotes[] = [toNotes(this.notes())];
    if (others.length === 0) return lists;
    let creds: grpc.ChannelCredentials;
    try {
      creds = clientCredentials(this.deps.tls());
    } catch {
      return lists;
    }
    const answers = await Promise.all(
      others.map(async (addr) => {
        const client = new CaClient(addr, creds, { ...TLS_CHANNEL_OPTIONS, 'grpc.use_local_subchannel_pool': 1 });
        try {
          const r = await new Promise<NodeCertReports>((resolve, reject) =>
            client.listNodeCertReports({}, new grpc.Metadata(), { deadline: Date.now() + 3000 }, (err, res) => (err ? reject(err) : resolve(res))),
          );
          return [toNotes(r)];
        } catch {
          return [];
        } finally {
          client.close();
        }
      }),
    );
    return [...lists, ...answers.flat()];
  }

  /**
   * Why a new rotation must wait, if it must: a manager whose etcd member does not trust the
   * current root (it started before the last rotation) could not verify certificates of the next root.
   */
  async refusal(): Promise<string | undefined> {
    const b = this.deps.ca.bundle();
    if (b.rotating || !b.signing) return undefined; // startRotation explains an ongoing rotation
    const notes = await this.gather();
    const name = (id: string) => this.deps.store.view().get('nodes', id)?.description?.hostname || id;
    const stale = staleEtcdMembers(notes, derDigest(b.signing)).map(name);
    if (stale.length === 0) return undefined;
    return `the etcd member of manager(s) ${stale.join(', ')} started before the last root rotation and trusts only the previous root (etcd reads its roots when it starts): each manager restarts its member by itself, one at a time, once every manager is reachable (or restart gantryd there); then rotate again`;
  }

  /** Where a rotation stands (also outside one: every node then counts as rotated to the only root). */
  async view(): Promise<RotationView> {
    const bundle = this.deps.ca.bundle();
    const nodes = this.deps.store
      .view()
      .list('nodes')
      .map((n) => ({ id: n.id, hostname: n.description?.hostname || n.spec?.name || '', state: stateName(n.status?.state) }));
    const signingDigest = bundle.signing ? derDigest(bundle.signing) : '';
    const sinceMs = bundle.intermediates[0] ? new X509Certificate(bundle.intermediates[0]).validFromDate.getTime() : 0;
    const progress = bundle.rotating
      ? rotationProgress(nodes, mergeReports((await this.gather()).map((n) => n.reports)), signingDigest, sinceMs)
      : { nodes: nodes.map((n) => ({ ...n, rotated: true, why: '' })), rotated: nodes.length, total: nodes.length, done: true };
    return { bundle, oldDigest: bundle.token ? derDigest(bundle.token) : '', newDigest: signingDigest, progress };
  }

  /**
   * After a rotation, a manager whose etcd member trusts only an older root restarts it, one
   * manager at a time (etcdRestartTurn), so that the next rotation needs no operator.
   */
  private async refreshEtcdTrust(): Promise<void> {
    const b = this.deps.ca.bundle();
    const member = this.deps.etcdMember;
    if (!member || b.rotating || !b.signing || !this.etcdRoots) return;
    const current = derDigest(b.signing);
    if (splitPem(this.etcdRoots).map(derDigest).includes(current)) return;
    // this host's roots file is written when the node hears of the new roots: a restart before that helps nothing
    const onDisk = await member.rootsOnDisk();
    if (!splitPem(onDisk).map(derDigest).includes(current)) return;
    const managers = this.deps.store
      .view()
      .list('nodes')
      .filter((n) => n.role === NodeRole.NODE_ROLE_MANAGER);
    const leaderId = managers.find((n) => n.managerStatus?.leader)?.id ?? '';
    const turn = etcdRestartTurn(await this.gather(), { selfId: this.deps.selfId, leaderId, managerIds: managers.map((n) => n.id), currentDigest: current });
    if (!turn) return;
    this.deps.log(`ca: restarting this manager's etcd member so that it trusts the current root sha256:${current.slice(0, 16)}… (etcd reads its roots when it starts)`);
    await member.restart();
    this.etcdRoots = onDisk;
    this.deps.log('ca: etcd member restarted with the current roots');
  }

  /** The leader finishes a rotation once every node is rotated; afterwards each manager refreshes its etcd member's trust. Returns the stop function. */
  start(): () => void {
    const every = this.deps.intervalMs ?? 1000;
    let busy = false;
    const tick = async () => {
      if (busy) return;
      if (!this.deps.ca.bundle().rotating) {
        busy = true;
        await this.refreshEtcdTrust()
          .catch((err) => this.deps.log(`ca: refreshing the etcd member's roots: ${(err as Error).message}`))
          .finally(() => {
            busy = false;
          });
        return;
      }
      if (!this.deps.isLeader()) return;
      busy = true;
      try {
        const v = await this.view();
        if (v.progress.done && (await this.deps.ca.finishRotation())) {
          this.deps.log(`ca: root CA rotation done: every node (${v.progress.total}) holds a certificate from sha256:${v.newDigest.slice(0, 16)}…; the old root is no longer trusted and the join tokens changed`);
        }
      } catch (err) {
        this.deps.log(`ca: checking the root rotation: ${(err as Error).message}`);
      } finally {
        busy = false;
      }
    };
    const timer = setInterval(() => void tick(), every);
    timer.unref();
    return () => clearInterval(timer);
  }
}
