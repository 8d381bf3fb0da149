// Secret and config values on a worker: kept in memory, written only to a tmpfs (never the data
// dir's disk), one directory per task, and bind-mounted read-only into its container at
// /run/secrets/<target> (secrets) or <target> (configs). Removed with the task.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Mount, SecretReference, Task } from '../proto/gen/gantry/v1/objects.ts';

/** Where a gantryd with this data dir keeps its secrets tmpfs: under /run, which a reboot clears; one per data dir (several gantryd share a machine in the lab). */
export function secretsDirFor(dataDir: string): string {
  return path.join('/run/gantry-secrets', createHash('sha256').update(path.resolve(dataDir)).digest('hex').slice(0, 12));
}

export class SecretFiles {
  private readonly dir: string;
  private readonly values = new Map<string, Buffer>();
  private mounted = false;
  private readonly log: (m: string) => void;

  constructor(dir: string, log: (m: string) => void) {
    this.dir = dir;
    this.log = log;
  }

  private ensureTmpfs(): void {
    if (this.mounted) return;
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    try {
      execFileSync('mountpoint', ['-q', this.dir]);
    } catch {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'mode=0700,size=64m,nosuid,nodev,noexec', 'tmpfs', this.dir]);
    }
    this.mounted = true;
  }

  add(values: { id: string; data: Uint8Array }[]): void {
    for (const v of values) this.values.set(v.id, Buffer.from(v.data));
  }

  /** The task with its secrets/configs as read-only bind mounts of files written for it on the tmpfs. */
  prepare(task: Task): Task {
    const files = task.spec?.container?.files;
    const refs: [SecretReference, 'secret' | 'config'][] = [
      ...(files?.secrets ?? []).map((r) => [r, 'secret'] as [SecretReference, 'secret']),
      ...(files?.configs ?? []).map((r) => [r, 'config'] as [SecretReference, 'config']),
    ];
    const spec = task.spec;
    const container = spec?.container;
    if (refs.length === 0 || !spec || !container) return task;
    const mounts: Mount[] = [];
    for (const [r, kind] of refs) {
      const key = r.secretId || r.secretName;
      const value = this.values.get(key);
      if (!value) {
        this.log(`task ${task.id}: ${kind} ${r.secretName} was not sent to this node`);
        continue;
      }
      this.ensureTmpfs();
      const taskDir = path.join(this.dir, task.id);
      mkdirSync(taskDir, { recursive: true, mode: 0o700 });
      const file = path.join(taskDir, `${kind}-${key}`);
      writeFileSync(file, value, { mode: r.mode || 0o444 });
      const name = r.target || r.secretName;
      const target = kind === 'secret' ? path.posix.join('/run/secrets', path.posix.basename(name)) : name.startsWith('/') ? name : `/${name}`;
      mounts.push({ type: 'bind', source: file, target, readOnly: true });
    }
    return { ...task, spec: { ...spec, container: { ...container, mounts: [...(container.mounts ?? []), ...mounts] } } };
  }

  /** Forgets a task's files (it was removed from this node). */
  release(taskId: string): void {
    if (!this.mounted) return;
    rmSync(path.join(this.dir, taskId), { recursive: true, force: true });
  }

  /**
   * gantryd stops: the tmpfs leaves the host's view (lazily: containers still running keep their
   * own bind mounts of their files, and the memory is freed when the last of them exits), so no
   * secret value stays readable on the host after its daemon is gone. The next start mounts anew.
   */
  close(): void {
    if (!this.mounted) return;
    try {
      execFileSync('umount', ['--lazy', this.dir], { stdio: 'ignore' });
      rmSync(this.dir, { recursive: true, force: true });
    } catch (err) {
      this.log(`could not unmount ${this.dir}: ${(err as Error).message}`);
    }
    this.mounted = false;
  }
}
