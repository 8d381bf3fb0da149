// The spawner's Node helper (see spawner.ts), used when gantry-spawn (C) is not built or with GANTRY_SPAWNER=node:
// runs each command it is sent with execFile, and rootfs mounts with the default mounter; exits with gantryd.
import { defaultMounter } from './rootfs-mount.ts';
import { execCommand, type HelperReply, type HelperRequest } from './spawner.ts';

async function handle(m: HelperRequest): Promise<HelperReply> {
  if (m.op === 'exec') return { id: m.id, op: 'exec', ...(await execCommand(m.file, m.args, m)) };
  try {
    const mounter = await defaultMounter();
    if (m.op === 'mount') return { id: m.id, op: 'mount', rootfs: (await mounter.mountRootfs(m.opts)).rootfs };
    await mounter.unmountRootfs(m.containerDir);
    return { id: m.id, op: 'unmount' };
  } catch (e) {
    return { id: m.id, op: m.op, error: (e as Error).message };
  }
}

process.on('message', (m: HelperRequest) => {
  void handle(m).then((r) => process.send?.(r));
});
process.on('disconnect', () => process.exit(0));
