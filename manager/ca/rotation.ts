// Root CA rotation, the pure part: what the cluster's root bundle (Cluster.root_ca_cert) says
// (which roots are trusted, which one signs, the cross-signed copy), and which nodes still need a
// certificate from the new root (so whether the old root can be dropped). No I/O, time passed in.
//
// Cluster.root_ca_cert during a rotation:  old root, new root, new root cross-signed by the old one.
// The first root is what join tokens carry (the old one, until the rotation is done); the signing
// root is the one the cross-signed certificate certifies. Outside a rotation: one root.
import { createHash, X509Certificate } from 'node:crypto';
import { splitPem } from './identity.ts';

export interface RootBundle {
  /** Self-signed roots, in order: every one is trusted. */
  roots: string[];
  /** Not self-signed CA certificates (the new root cross-signed by the old one). */
  intermediates: string[];
  /** The root new certificates are issued from. */
  signing: string;
  /** The root join tokens carry (the first). */
  token: string;
  /** More than one root: a rotation is under way. */
  rotating: boolean;
}

function selfSigned(c: X509Certificate): boolean {
  return c.checkIssued(c) && c.verify(c.publicKey);
}

export function derDigest(pem: string): string {
  return createHash('sha256').update(new X509Certificate(pem).raw).digest('hex');
}

export function parseRootBundle(bundle: string | Uint8Array | undefined): RootBundle {
  const text = typeof bundle === 'string' ? bundle : Buffer.from(bundle ?? '').toString();
  const roots: string[] = [];
  const intermediates: string[] = [];
  for (const pem of splitPem(text)) {
    const p = pem.endsWith('\n') ? pem : `${pem}\n`;
    (selfSigned(new X509Certificate(p)) ? roots : intermediates).push(p);
  }
  let signing = roots[0] ?? '';
  const cross = intermediates[0];
  if (cross) {
    const key = new X509Certificate(cross).publicKey;
    signing = roots.find((r) => new X509Certificate(r).publicKey.equals(key)) ?? signing;
  }
  return { roots, intermediates, signing, token: roots[0] ?? '', rotating: roots.length > 1 };
}

/** The bundle a rotation starts with: old root first (tokens keep it), then the new root and its cross-signed copy. */
export function rotatingBundle(oldRoot: string, newRoot: string, cross: string): string {
  const nl = (s: string) => (s.endsWith('\n') ? s : `${s}\n`);
  return nl(oldRoot) + nl(newRoot) + nl(cross);
}

/** Which root of `roots` signed `certPem` (its first certificate) directly: its digest, or ''. */
export function issuerDigest(certPem: string | Buffer, roots: string[]): string {
  const c = new X509Certificate(certPem);
  for (const r of roots) {
    const root = new X509Certificate(r);
    if (c.checkIssued(root) && c.verify(root.publicKey)) return createHash('sha256').update(root.raw).digest('hex');
  }
  return '';
}

/**
 * What a node should send as its certificate chain: its certificate, then each intermediate that
 * links it to a root in `roots` (the cross-signed new root, while the old root is still trusted).
 */
export function chainFor(certPem: string, roots: string[]): string {
  const [leaf, ...rest] = splitPem(certPem);
  if (!leaf) return certPem;
  const trusted = roots.map((r) => new X509Certificate(r));
  const links = rest.filter((i) => {
    const c = new X509Certificate(i);
    return trusted.some((r) => c.checkIssued(r) && c.verify(r.publicKey));
  });
  return [leaf, ...links].map((p) => (p.endsWith('\n') ? p : `${p}\n`)).join('');
}

/**
 * A certificate as a node saves it: the one issued, then the cross-signed root that links it to
 * the previous root (from this issue, or kept from the certificate held before). etcd 3.4 loads
 * its trusted CA file only when it starts, so a member started before the last rotation trusts
 * only the previous root: this keeps renewed certificates acceptable to it until it restarts.
 * One link only: roots allow one intermediate (path length 1), so a chain back over two
 * rotations would not verify anyway (members must restart between rotations: README).
 * The link must sign the certificate and be valid at `now`.
 */
export function extendChain(certPem: string, previous: string | undefined, now: number): string {
  const issued = splitPem(certPem);
  if (issued.length === 0) return certPem;
  const leaf = new X509Certificate(issued[0]);
  const link = [...issued.slice(1), ...splitPem(previous ?? '').slice(1)].find((p) => {
    const c = new X509Certificate(p);
    return c.ca && !c.checkIssued(c) && leaf.checkIssued(c) && leaf.verify(c.publicKey) && c.validToDate.getTime() > now;
  });
  return [issued[0], ...(link ? [link] : [])].map((p) => (p.endsWith('\n') ? p : `${p}\n`)).join('');
}

// ---------------------------------------------------------------------------------------------
// Progress: every node must present a certificate from the new root before the old one goes.

export interface NodeCertReport {
  nodeId: string;
  issuerDigest: string;
  atMs: number;
}

export interface RotationNode {
  id: string;
  hostname: string;
  /** ready | down | disconnected | unknown */
  state: string;
}

export interface NodeProgress {
  id: string;
  hostname: string;
  state: string;
  rotated: boolean;
  why: string;
}

export interface RotationProgress {
  nodes: NodeProgress[];
  rotated: number;
  total: number;
  /** Every node presented a certificate from the new root: drop the old root, change the tokens. */
  done: boolean;
}

/** The latest report of each node among those gathered from every manager. */
export function mergeReports(lists: NodeCertReport[][]): Map<string, NodeCertReport> {
  const out = new Map<string, NodeCertReport>();
  for (const list of lists) {
    for (const r of list) {
      const have = out.get(r.nodeId);
      if (!have || r.atMs > have.atMs) out.set(r.nodeId, r);
    }
  }
  return out;
}

/**
 * Which nodes still hold a certificate from the old root. A node is rotated once a manager saw it
 * present a certificate signed by `signingDigest` (after the rotation started: `sinceMs`).
 */
export function rotationProgress(nodes: RotationNode[], reports: Map<string, NodeCertReport>, signingDigest: string, sinceMs: number): RotationProgress {
  const out: NodeProgress[] = nodes.map((n) => {
    const r = reports.get(n.id);
    const rotated = r !== undefined && r.issuerDigest === signingDigest;
    let why = '';
    if (!rotated) {
      if (n.state === 'down' || n.state === 'disconnected') {
        why = `${n.state}: it gets a certificate from the new root when it comes back, or remove it with \`gantry node rm ${n.hostname || n.id}\``;
      } else if (!r || r.atMs < sinceMs) {
        why = 'has not presented a certificate since the rotation started';
      } else {
        why = 'still presents a certificate from the old root (renewing)';
      }
    }
    return { id: n.id, hostname: n.hostname, state: n.state, rotated, why };
  });
  const rotated = out.filter((n) => n.rotated).length;
  return { nodes: out, rotated, total: out.length, done: out.length > 0 && rotated === out.length };
}

/** The bundle once the rotation is done: the signing root alone. */
export function finishedBundle(b: RootBundle): string {
  return b.signing;
}

/**
 * Managers whose etcd member does not trust `currentDigest` (it started before the last rotation):
 * a new rotation would hand out certificates they cannot verify (a second cross-signed link is
 * beyond the roots' path length). Managers that did not say (no digests) are not counted.
 */
export function staleEtcdMembers(members: { managerId: string; etcdRootDigests: string[] }[], currentDigest: string): string[] {
  return members.filter((m) => m.etcdRootDigests.length > 0 && !m.etcdRootDigests.includes(currentDigest)).map((m) => m.managerId);
}

/**
 * Whether this manager restarts its etcd member now, so that it reads the current roots: it is
 * stale, every manager answered (a member restarting while another is missing could cost the
 * quorum), and it is first in line. One at a time: stale followers by id, the leader last (its
 * restart may move the leadership, once).
 */
export function etcdRestartTurn(
  notes: { managerId: string; etcdRootDigests: string[] }[],
  o: { selfId: string; leaderId: string; managerIds: string[]; currentDigest: string },
): boolean {
  const answered = new Set(notes.map((n) => n.managerId));
  if (!o.managerIds.every((id) => answered.has(id))) return false;
  const stale = staleEtcdMembers(notes, o.currentDigest).sort((a, b) => Number(a === o.leaderId) - Number(b === o.leaderId) || a.localeCompare(b));
  return stale[0] === o.selfId;
}
