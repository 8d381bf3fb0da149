// Leadership as an etcd election: each candidate creates `<prefix>election/<lease>-<n>` (value: its id) on
// its process lease; the key with the lowest create_revision leads. State comes from the informer's watch.
//
//   campaign: txn(create_revision(key) == 0 ? put(key, id, lease))     resign/close: delete(key) (or lease revoke)
//   leader  = min create_revision under <prefix>election/              lease lost: step down, campaign again
import type { EtcdRpc } from './etcd-rpc.ts';
import type { LeaseKeeper } from './etcd-lease.ts';
import type { Informer } from './etcd-informer.ts';
import { electionPrefix } from './etcd-txn.ts';
import type { Leadership } from './types.ts';

export interface ElectionDeps {
  rpc: EtcdRpc;
  prefix: string;
  lease: LeaseKeeper;
  informer: Informer;
  log: (m: string) => void;
}

let seq = 0;

export class EtcdLeadership implements Leadership {
  private d: ElectionDeps;
  private candidateId: string;
  private key = '';
  private leading = false;
  private stopped = false;
  private listeners = new Set<(leader: boolean) => void>();
  private unsubs: Array<() => void> = [];
  private timer: NodeJS.Timeout | undefined;
  private campaigning: Promise<void> | undefined;
  private n = ++seq;

  private onResign: () => void;

  constructor(deps: ElectionDeps, candidateId: string, onResign: () => void = () => {}) {
    this.d = deps;
    this.candidateId = candidateId;
    this.onResign = onResign;
    this.unsubs.push(deps.informer.onElectionChange(() => this.evaluate()));
    this.unsubs.push(
      deps.lease.onLost(() => {
        this.key = '';
        this.evaluate();
        this.campaign();
      }),
    );
    // Step down on our own if keepalives stop being acknowledged, even if the watch is quiet.
    this.timer = setInterval(() => this.evaluate(), 250);
    this.timer.unref?.();
    this.campaign();
  }

  isLeader(): boolean {
    return this.leading;
  }

  onChange(listener: (leader: boolean) => void): () => void {
    const l = (v: boolean) => listener(v);
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  async leader(): Promise<string | undefined> {
    return this.current()?.value;
  }

  async resign(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.onResign();
    for (const u of this.unsubs) u();
    if (this.timer) clearInterval(this.timer);
    await this.campaigning?.catch(() => {});
    const key = this.key;
    this.key = '';
    this.set(false);
    if (key) {
      try {
        await this.d.rpc.call('KV', 'deleteRange', { key: Buffer.from(key) });
      } catch (err) {
        this.d.log(`store: resign could not delete ${key} (it goes with our lease): ${(err as Error).message}`);
      }
    }
  }

  private current() {
    let best: { key: string; createRevision: number; value: string } | undefined;
    for (const [key, e] of this.d.informer.elections) {
      if (!best || e.createRevision < best.createRevision) best = { key, ...e };
    }
    return best;
  }

  private evaluate(): void {
    if (this.stopped) return;
    const cur = this.current();
    this.set(this.key !== '' && cur?.key === this.key && this.d.lease.alive());
  }

  private set(v: boolean): void {
    if (v === this.leading) return;
    this.leading = v;
    this.d.log(`store: ${this.candidateId} ${v ? 'is now the leader' : 'is no longer the leader'}`);
    for (const l of [...this.listeners]) {
      try {
        l(v);
      } catch (err) {
        this.d.log(`store: leadership listener threw: ${(err as Error).message}`);
      }
    }
  }

  private campaign(): void {
    if (this.stopped || this.campaigning) return;
    this.campaigning = (async () => {
      let delay = 100;
      while (!this.stopped) {
        try {
          const leaseId = await this.d.lease.ensure();
          const key = `${electionPrefix(this.d.prefix)}${BigInt(leaseId).toString(16)}-${this.n}`;
          const k = Buffer.from(key);
          await this.d.rpc.txn({
            compare: [{ result: 'Equal', target: 'Create', key: k, create_revision: 0 }],
            success: [{ request_put: { key: k, value: Buffer.from(this.candidateId), lease: leaseId } }],
            failure: [],
          });
          // Either we created it now, or it is ours from an earlier attempt whose answer was lost.
          this.key = key;
          this.evaluate();
          return;
        } catch (err) {
          this.d.log(`store: campaign for ${this.candidateId} failed (${(err as Error).message}); retrying`);
          await new Promise((r) => setTimeout(r, delay));
          delay = Math.min(delay * 2, 2000);
        }
      }
    })().finally(() => {
      this.campaigning = undefined;
    });
  }
}
