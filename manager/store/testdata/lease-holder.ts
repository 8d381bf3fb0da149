// A child process for the lease test: opens an EtcdStore, writes a session on its lease, says "ready"
// and waits to be killed (so nothing revokes the lease: only its expiry removes the key).
import { EtcdStore } from '../etcd.ts';
import { fixtures } from '../fixtures.ts';

const [endpoint, nodeId, ttl] = process.argv.slice(2);
const store = await EtcdStore.open({ endpoints: [endpoint], managerId: 'lease-holder', leaseTtlMs: Number(ttl) });
const r = await store.commit([{ op: 'create', kind: 'sessions', object: fixtures.session({ nodeId, managerId: 'lease-holder' }), lease: true }]);
if (!r.ok) throw new Error(`lease-holder: ${JSON.stringify(r)}`);
process.stdout.write(`ready ${r.revision}\n`);
setInterval(() => {}, 1 << 30);
