// Test helpers for real-etcd tests: a throwaway etcd member in a temp dir on free ports (stopped and removed
// by t.after even when the test fails), stores that are closed at the end, and polling with a reason.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { EtcdStore, type EtcdStoreOptions } from './etcd.ts';
import { type EtcdMember, startEtcdMember } from './etcd-member.ts';

export interface TestEtcd {
  member: EtcdMember;
  dataDir: string;
  logs: string[];
  /** Opens a store on this etcd, closed (revoking its lease) when the test ends. */
  store(o?: Partial<EtcdStoreOptions>): Promise<EtcdStore>;
}

export async function testEtcd(t: TestContext, name = 'test'): Promise<TestEtcd> {
  const dataDir = await mkdtemp(join(tmpdir(), 'gantry-etcd-'));
  const logs: string[] = [];
  const stores: EtcdStore[] = [];
  let member: EtcdMember | undefined;
  t.after(async () => {
    for (const s of stores) await s.close().catch(() => {});
    await member?.stop().catch(() => {});
    await rm(dataDir, { recursive: true, force: true });
  });
  member = await startEtcdMember({ dataDir, name, host: '127.0.0.1', log: (l) => logs.push(l) });
  const m = member;
  return {
    member: m,
    dataDir,
    logs,
    async store(o = {}) {
      const s = await EtcdStore.open({ endpoints: [m.clientUrl], managerId: `m-${stores.length + 1}`, log: (l) => logs.push(l), ...o });
      stores.push(s);
      return s;
    },
  };
}

/** Polls `check` (which returns why it is not done yet, or undefined when done) until done or timeout. */
export async function until(check: () => string | undefined | Promise<string | undefined>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let why: string | undefined;
  while (Date.now() < deadline) {
    why = await check();
    if (why === undefined) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`not done after ${timeoutMs} ms: ${why}`);
}
