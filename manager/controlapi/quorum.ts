// Whether taking a manager out of the managers keeps a quorum. Pure. The managers' votes are
// their etcd members: a quorum is a majority of them, and only reachable (ready) ones can vote.
import { type Node, NodeRole, NodeState } from '../../proto/gen/gantry/v1/objects.ts';

export type QuorumCheck = { ok: true; warning?: string } | { ok: false; message: string };

function label(n: Node): string {
  return n.description?.hostname || n.id;
}

/** Demoting (or removing) `leaving` from the voting managers `nodes`. */
export function checkManagerLeaves(nodes: Node[], leaving: Node): QuorumCheck {
  const voters = nodes.filter((n) => n.role === NodeRole.NODE_ROLE_MANAGER);
  const after = voters.filter((n) => n.id !== leaving.id);
  const quorum = Math.floor(after.length / 2) + 1;
  const reachable = after.filter((n) => n.status?.state === NodeState.NODE_STATE_READY).length;
  if (after.length > 0 && reachable < quorum) {
    return {
      ok: false,
      message:
        `taking "${label(leaving)}" out of the managers would leave ${after.length} managers of which ${reachable} ${reachable === 1 ? 'is' : 'are'} reachable, ` +
        `fewer than the ${quorum} a quorum needs: bring the unreachable managers back first, or use --force`,
    };
  }
  return after.length > 0 && after.length % 2 === 0 ? { ok: true, warning: evenWarning(after.length) } : { ok: true };
}

export function evenWarning(count: number): string {
  return `the cluster will have ${count} managers: an even number tolerates no more failures than ${count - 1}; add or remove one`;
}
