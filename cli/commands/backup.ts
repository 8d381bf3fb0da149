// `gantry cluster backup FILE`: writes a consistent copy of the cluster state (one etcd revision)
// from a manager, atomically and readable only by its owner (it holds the join tokens).
import { rename, writeFile } from 'node:fs/promises';
import { UsageError } from '../args.ts';
import type { Command } from '../command.ts';
import { callError } from '../connection.ts';
import { type BackupChunk, ControlClient } from '../../proto/gen/gantry/v1/control.ts';
import type * as grpc from '@grpc/grpc-js';

const backup: Command = {
  path: ['cluster', 'backup'],
  summary: 'Write a consistent copy of the cluster state to a file',
  usage: 'gantry cluster backup FILE',
  flags: [],
  async run(args, ctx) {
    const [file] = args.positionals;
    if (!file || args.positionals.length > 1) throw new UsageError('cluster backup takes one FILE');
    const conn = ctx.connect();
    const control = conn.client(ControlClient);
    const parts: Buffer[] = [];
    await new Promise<void>((resolve, reject) => {
      const call = control.backup({}, { deadline: Date.now() + 120_000 });
      call.on('data', (c: BackupChunk) => parts.push(Buffer.from(c.data)));
      call.on('error', (err: grpc.ServiceError) => reject(callError(err, conn.target)));
      call.on('end', () => resolve());
    });
    const data = Buffer.concat(parts);
    const header = JSON.parse(data.subarray(0, data.indexOf(10)).toString()) as { revision: number; counts: Record<string, number> };
    const tmp = `${file}.tmp-${process.pid}`;
    await writeFile(tmp, data, { mode: 0o600 });
    await rename(tmp, file);
    const counts = Object.entries(header.counts).map(([k, n]) => `${n} ${k}`).join(', ');
    ctx.out.write(`Backed up the cluster state at revision ${header.revision} (${counts}) to ${file}\n`);
    return 0;
  },
};

export const commands: Command[] = [backup];
