// A stand-in gantryd for the re-adoption test: runs a TaskManager over OciRuntime until its task is
// RUNNING, prints "running <pid>", then idles until it is SIGKILLed. Args: one JSON object.
import { TaskState } from '../../../proto/gen/gantry/v1/objects.ts';
import { nullLog } from '../../runtime/log.ts';
import { OciRuntime } from '../../runtime/runtime-oci.ts';
import { TaskManager } from '../task-manager.ts';
import { dirImages, task } from '../testing.ts';

const a = JSON.parse(process.argv[2]) as { name: string; binary: string; root: string; stateDir: string; monitor: string; cgroupParent: string; layer: string; workerDir: string; taskId: string; command: string[] };
const rt = new OciRuntime({ name: a.name, binary: a.binary, root: a.root, stateDir: a.stateDir, monitorBinary: a.monitor, cgroupParent: a.cgroupParent });
const m = new TaskManager({
  runtime: rt, images: dirImages(a.layer), stateDir: a.workerDir, clock: { now: () => Date.now() }, log: nullLog,
  onStatus: async (id, st) => {
    if (id === a.taskId && st.state === TaskState.TASK_STATE_RUNNING) process.stdout.write(`running ${(await rt.state(id)).pid}\n`);
  },
});
await m.start();
m.assign([task(a.taskId, { command: a.command, graceMs: 20_000 })], true, []);
setInterval(() => {}, 1 << 30);
