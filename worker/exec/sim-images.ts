// A TaskImages with no registry and no files, for SimRuntime nodes and tests: every image exists
// (an empty config) except the names listed as missing, which fail like a registry 404 would.
import type { ImageConfigLike } from './container-config.ts';
import type { TaskImages } from './controller.ts';

export function simImages(opts: { missing?: string[]; config?: ImageConfigLike } = {}): TaskImages<{ id: string; ref: string }> {
  const missing = new Set(opts.missing ?? []);
  const bare = (ref: string) => ref.split('@')[0];
  return {
    async resolveLocal(ref) {
      return missing.has(bare(ref)) ? undefined : { id: `sim:${bare(ref)}`, ref };
    },
    async pull(ref) {
      throw new Error(`image "${bare(ref)}" not found in the simulated registry (404)`);
    },
    async imageConfig() {
      return opts.config ?? { Cmd: ['sim-run'] };
    },
    async snapshotDirs() {
      return [];
    },
  };
}
