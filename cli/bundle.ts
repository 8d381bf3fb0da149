// The installed `gantry` runs one bundled file (cli/dist/gantry.cjs) instead of ~100 modules: resolving
// and loading them was ~60 ms of every call (`service create --help`: 220 → 155 ms on this host).
// `npm run build:cli` (deploy/install.sh runs it) writes it; tests and benches call buildCli() to get a fresh one.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const CLI_DIR = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.dirname(CLI_DIR);
export const BUNDLE_PATH = path.join(CLI_DIR, 'dist', 'gantry.cjs');

/**
 * Bundles cli/bundle-entry.ts (and all it imports) next to `out` and writes `out` as a three-line
 * loader that turns Node's compile cache on before the bundle is compiled (so it is cached without
 * NODE_COMPILE_CACHE in the environment). Both written tmp + rename; throws with esbuild's errors.
 */
export async function buildCli(out = BUNDLE_PATH): Promise<string> {
  const { build } = await import('esbuild');
  mkdirSync(path.dirname(out), { recursive: true });
  const main = out.replace(/\.cjs$/, '') + '-main.cjs';
  const tmp = `${main}.${process.pid}.tmp`;
  await build({
    entryPoints: [path.join(CLI_DIR, 'bundle-entry.ts')],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node24',
    outfile: tmp,
    logLevel: 'error',
    legalComments: 'none',
  });
  renameSync(tmp, main);
  const loader = [
    '// gantry CLI loader (cli/bundle.ts): compile cache first, then the bundle',
    "try { require('node:module').enableCompileCache(process.env.NODE_COMPILE_CACHE || '/var/cache/gantry/node-compile'); } catch {}",
    `require(${JSON.stringify(`./${path.basename(main)}`)});`,
    '',
  ].join('\n');
  writeFileSync(`${out}.tmp`, loader);
  renameSync(`${out}.tmp`, out);
  return out;
}

if (import.meta.main) {
  buildCli().then(
    (out) => console.log(`wrote ${path.relative(process.cwd(), out)}`),
    (e) => {
      console.error(`building the CLI bundle failed: ${(e as Error).message}`);
      process.exit(1);
    },
  );
}
