// The installed `gantry` runs one bundled file (cli/dist/gantry.cjs) instead of ~100 modules: resolving
// and loading them was ~60 ms of every call (`service create --help`: 220 → 155 ms on this host).
// `npm run build:cli` (deploy/install.sh runs it) writes it; tests and benches call buildCli() to get a fresh one.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
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
    plugins: [lazyModules(LAZY)],
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

/**
 * Loaded on first use, not when the bundle starts: a unary command over the local unary socket
 * (cli/connection.ts) needs none of them, and they are most of a short command's start-up
 * (node:tls ~20 ms, grpc-js with http2 ~60 ms on this host). Nothing may touch them at module load.
 */
const LAZY = ['@grpc/grpc-js', 'node:tls'];

/**
 * An esbuild plugin: each module in `names` is replaced by a stand-in whose exports are getters
 * that load the real module on first read. grpc-js's makeGenericClientConstructor, which the
 * generated protos call at load, returns a constructor that loads grpc-js when first used.
 */
function lazyModules(names: string[]): import('esbuild').Plugin {
  const require = createRequire(import.meta.url);
  const filter = new RegExp(`^(${names.map((n) => n.replace(/[/.]/g, '\\$&')).join('|')})$`);
  return {
    name: 'gantry-lazy-modules',
    setup(b) {
      b.onResolve({ filter }, (args) => (args.namespace === 'gantry-lazy' ? undefined : { path: args.path, namespace: 'gantry-lazy' }));
      b.onLoad({ filter: /.*/, namespace: 'gantry-lazy' }, (args) => {
        const real = args.path.startsWith('node:') ? args.path : require.resolve(args.path);
        const own = args.path === '@grpc/grpc-js' ? ['makeGenericClientConstructor'] : [];
        const keys = Object.keys(require(args.path) as object).filter((k) => k !== 'default' && k !== '__esModule' && !own.includes(k));
        const contents = [
          `let real; const load = () => (real ??= require(${JSON.stringify(real)}));`,
          `for (const k of ${JSON.stringify(keys)}) Object.defineProperty(exports, k, { enumerable: true, get: () => load()[k] });`,
          ...(args.path === '@grpc/grpc-js'
            ? [
                'Object.defineProperty(exports, "makeGenericClientConstructor", { enumerable: true, value: (def, name, opts) => {',
                '  let C; const Lazy = function (...a) { C ??= load().makeGenericClientConstructor(def, name, opts); return Reflect.construct(C, a); };',
                '  Lazy.service = def; Lazy.serviceName = name; return Lazy;',
                '} });',
              ]
            : []),
        ].join('\n');
        return { contents, loader: 'js', resolveDir: REPO_ROOT };
      });
    },
  };
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
