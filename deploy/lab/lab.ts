// The lab's command line: `node deploy/lab/lab.ts up|down|cleanup|ls|start|stop|kill|gantry|exec`.
// Thin: parses argv and calls deploy/lab/lab-hosts.ts and lab-cluster.ts.
import { formCluster } from './lab-cluster.ts';
import { cleanupLabs, Lab, listLabs } from './lab-hosts.ts';

const USAGE = `usage: node deploy/lab/lab.ts COMMAND [OPTIONS]

  up --hosts N [--id ID] [--runtime R] [--start] [--cluster]
        make N hosts (netns gl<ID>h<n>, 10.213.<ID>.<10+n>); --start runs gantryd on each,
        --cluster also inits host 0 and joins the others. The lab stays until \`down\`.
  down --id ID | --all         stop everything of a lab and remove it
  cleanup [--all]              remove labs whose owner process is gone (--all: every lab)
  ls                           list labs
  start|stop|kill --id ID --host N [-- GANTRYD-ARGS]   one host's gantryd (kill = the host dies)
  partition --id ID A B | heal --id ID
  gantry --id ID --host N -- ARGS...    run the gantry CLI against that host
  exec --id ID --host N -- CMD...       run a command in that host's netns`;

function flag(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}

function num(argv: string[], name: string): number {
  const v = flag(argv, name);
  if (v === undefined || !/^\d+$/.test(v)) throw new Error(`--${name} NUMBER is required\n\n${USAGE}`);
  return Number(v);
}

function rest(argv: string[]): string[] {
  const i = argv.indexOf('--');
  return i >= 0 ? argv.slice(i + 1) : [];
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...args] = argv;
  const head = args.includes('--') ? args.slice(0, args.indexOf('--')) : args;
  switch (cmd) {
    case 'up': {
      const id = flag(head, 'id');
      const lab = await Lab.up({ hosts: num(head, 'hosts'), id: id ? Number(id) : undefined, runtime: flag(head, 'runtime'), owner: null });
      try {
        if (head.includes('--cluster')) await formCluster(lab);
        else if (head.includes('--start')) await Promise.all(lab.hosts.map((h) => h.start()));
      } catch (err) {
        await lab.down().catch(() => {});
        throw err;
      }
      console.log(`lab ${lab.id}: ${lab.root}`);
      for (const h of lab.hosts) console.log(`  ${h.index}  ${h.name}  ${h.ip}  GANTRY_HOST=unix://${h.socket}  log ${h.logFile}`);
      console.log(`down: node deploy/lab/lab.ts down --id ${lab.id}`);
      return 0;
    }
    case 'down': {
      if (head.includes('--all')) return report(await cleanupLabs({ all: true }));
      await Lab.open(num(head, 'id')).down();
      return 0;
    }
    case 'cleanup':
      return report(await cleanupLabs({ all: head.includes('--all') }));
    case 'ls': {
      for (const l of listLabs()) {
        const owner = l.owner === null ? 'kept' : `owner ${l.owner}${l.ownerAlive ? '' : ' (dead)'}`;
        console.log(`${l.id}\t${l.hosts} hosts\t${owner}\tnetns: ${l.netns.join(' ') || '-'}\t${l.created ?? ''}`);
      }
      return 0;
    }
    case 'start':
    case 'stop':
    case 'kill': {
      const h = Lab.open(num(head, 'id')).host(num(head, 'host'));
      if (cmd === 'start') await h.start(rest(args));
      else if (cmd === 'stop') await h.stop();
      else await h.kill();
      return 0;
    }
    case 'partition': {
      const pos = head.filter((x, i) => !x.startsWith('--') && head[i - 1] !== '--id');
      await Lab.open(num(head, 'id')).partition(Number(pos[0]), Number(pos[1]));
      return 0;
    }
    case 'heal':
      await Lab.open(num(head, 'id')).heal();
      return 0;
    case 'gantry':
    case 'exec': {
      const h = Lab.open(num(head, 'id')).host(num(head, 'host'));
      const r = cmd === 'gantry' ? await h.gantry(rest(args)) : await h.exec(rest(args));
      process.stdout.write(r.stdout);
      process.stderr.write(r.stderr);
      return r.code;
    }
    default:
      console.error(USAGE);
      return cmd === undefined || cmd === 'help' || cmd === '--help' ? 0 : 2;
  }
}

function report(r: { removed: number[]; errors: string[] }): number {
  console.log(r.removed.length ? `removed labs: ${r.removed.join(', ')}` : 'no labs to remove');
  for (const e of r.errors) console.error(e);
  return r.errors.length ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`lab: ${err.message}`);
    process.exit(1);
  },
);
