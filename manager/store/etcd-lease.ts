// This manager process's etcd lease: granted at open, kept alive on one stream (every ttl/3), re-granted
// when lost. Keys written with `lease: true` and our election key hang on it, so they vanish when we die.
import type { EtcdRpc } from './etcd-rpc.ts';

export class LeaseKeeper {
  private rpc: EtcdRpc;
  private ttlMs: number;
  private log: (m: string) => void;
  private current = '0';
  /** When the last acknowledged keepalive was sent (or the lease granted). */
  private lastAck = 0;
  /**
   * Keepalives on the current stream not yet answered, oldest first. etcd answers every request on a
   * stream, in order, whatever lease it names, so each answer consumes exactly one entry.
   */
  private sent: { id: string; at: number }[] = [];
  private lostListeners = new Set<(oldId: string) => void>();
  private stream: ReturnType<EtcdRpc['keepAliveStream']> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private regranting: Promise<string> | undefined;
  private stale = new Set<string>();

  constructor(rpc: EtcdRpc, ttlMs: number, log: (m: string) => void) {
    this.rpc = rpc;
    this.ttlMs = ttlMs;
    this.log = log;
  }

  /** etcd TTLs are whole seconds, at least 2 (etcd raises shorter ones anyway). */
  get ttlSeconds(): number {
    return Math.max(2, Math.ceil(this.ttlMs / 1000));
  }

  get id(): string {
    return this.current;
  }

  /** True while a keepalive was acknowledged recently enough that the lease cannot have expired. */
  alive(now = Date.now()): boolean {
    return this.current !== '0' && now - this.lastAck < this.ttlSeconds * 1000 - 250;
  }

  onLost(listener: (oldId: string) => void): () => void {
    this.lostListeners.add(listener);
    return () => this.lostListeners.delete(listener);
  }

  async start(): Promise<void> {
    await this.grant();
    this.timer = setInterval(() => this.tick(), this.tickMs);
    this.timer.unref?.();
  }

  /** A live lease id, re-granting first if ours was lost. */
  async ensure(): Promise<string> {
    if (this.current !== '0' && this.alive()) return this.current;
    if (this.current !== '0') this.lose();
    return this.regrant();
  }

  /**
   * Lease `failed` is gone on the server (etcd said "lease not found" for a write made with it). Only
   * that lease is lost: several writes in flight with it all fail, and the later ones must not throw
   * away the lease the first one already replaced it with.
   */
  async replace(failed: string): Promise<string> {
    if (this.current === failed) this.lose();
    if (this.current !== '0') return this.current;
    return this.regrant();
  }

  private regrant(): Promise<string> {
    this.regranting ??= this.grant().finally(() => {
      this.regranting = undefined;
    });
    return this.regranting;
  }

  private async grant(): Promise<string> {
    let asked = Date.now();
    const res = await this.rpc.leaseGrant(this.ttlSeconds, () => {
      asked = Date.now(); // the lease comes from a later attempt: count from (just before) it
    });
    if (res.error) throw new Error(`etcd refused a lease: ${res.error}`);
    this.current = res.ID;
    this.lastAck = asked;
    // Keepalives for the new lease must not queue behind ones still stuck on the old stream (etcd
    // serves a stream's requests one at a time; one forwarded to a dead raft leader blocks for ~7 s).
    this.resetStream();
    this.log(`store: lease ${BigInt(res.ID).toString(16)} granted (ttl ${res.TTL}s)`);
    this.revokeStale();
    return res.ID;
  }

  private revokeStale(): void {
    for (const id of this.stale) {
      this.rpc.leaseRevoke(id).then(
        () => this.stale.delete(id),
        (err: { code?: number }) => {
          if (err?.code === 5) this.stale.delete(id); // NOT_FOUND: already expired
        },
      );
    }
  }

  private lose(): void {
    const old = this.current;
    if (old === '0') return;
    this.current = '0';
    this.log(`store: lease ${BigInt(old).toString(16)} lost (no keepalive for ${Date.now() - this.lastAck} ms); keys written with lease are gone`);
    // If it is in fact still alive on the server, end it (now, or once etcd answers again), so its
    // keys do not linger for a TTL next to the ones our listeners are about to write again.
    this.stale.add(old);
    this.revokeStale();
    for (const l of [...this.lostListeners]) {
      try {
        l(old);
      } catch (err) {
        this.log(`store: lease-lost listener threw: ${(err as Error).message}`);
      }
    }
  }

  private tick(): void {
    if (this.closed) return;
    if (this.current === '0') {
      void this.regrant().catch(() => {});
      return;
    }
    if (!this.alive()) {
      this.lose();
      void this.regrant().catch(() => {});
      return;
    }
    const now = Date.now();
    // The oldest keepalive unanswered for a whole tick: etcd is stuck on it (our member forwards
    // renewals to the raft leader and waits up to ~7 s when that leader died). Later keepalives
    // on this stream wait behind it, so start a fresh stream (which asks the current leader).
    if (this.stream && this.sent.length > 0 && now - this.sent[0].at >= this.tickMs) this.resetStream();
    if (!this.stream) this.openStream();
    try {
      this.stream?.write({ ID: this.current });
      this.sent.push({ id: this.current, at: now });
    } catch {
      this.resetStream();
    }
  }

  private get tickMs(): number {
    return Math.max(200, Math.floor(this.ttlMs / 3));
  }

  /** Abandons the keepalive stream (and what is pending on it); the next tick opens a new one. */
  private resetStream(): void {
    const s = this.stream;
    this.stream = undefined;
    this.sent = [];
    if (s) {
      s.on('error', () => {});
      s.cancel();
    }
  }

  private openStream(): void {
    const s = this.rpc.keepAliveStream();
    this.stream = s;
    this.sent = [];
    s.on('data', (res: { ID: string; TTL: string }) => {
      if (this.stream !== s) return; // an abandoned stream: its answers match nothing we track
      const req = this.sent.shift();
      if (res.ID !== this.current || req?.id !== res.ID) return; // an answer for an earlier lease
      if (Number(res.TTL) <= 0) {
        this.lose();
        void this.regrant().catch(() => {});
        return;
      }
      // Count from when that keepalive was SENT: the server renewed the lease no earlier than that,
      // so "alive" can never outlast the server's idea of the lease.
      this.lastAck = Math.max(this.lastAck, req.at);
    });
    const drop = () => {
      if (this.stream === s) this.stream = undefined;
    };
    s.on('error', drop);
    s.on('end', drop);
    s.on('close', drop);
  }

  /** Stops keepalives; with revoke, deletes the lease (and our leased keys) now. */
  async close(revoke: boolean): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.resetStream();
    if (revoke && this.current !== '0') {
      try {
        await this.rpc.leaseRevoke(this.current);
      } catch (err) {
        this.log(`store: could not revoke lease (it expires in ${this.ttlSeconds}s): ${(err as Error).message}`);
      }
    }
    this.current = '0';
  }
}
