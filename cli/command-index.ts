// Which cli/commands/*.ts module holds the commands under each first word of argv, so the CLI loads
// only the module it runs: loading every one cost ~0.4 s per call (certificate libraries, all protos).
import type { Command } from './command.ts';

export interface CommandModule {
  /** First words (of paths and aliases) of this module's commands; command-index.test.ts checks them. */
  words: string[];
  load(): Promise<{ commands: Command[] }>;
}

/** Adding a command module: list it here with the first words of its commands. */
export const COMMAND_MODULES: CommandModule[] = [
  { words: ['cluster'], load: () => import('./commands/backup.ts') },
  { words: ['cluster'], load: () => import('./commands/cluster.ts') },
  { words: ['secret'], load: () => import('./commands/secret.ts') },
  { words: ['config'], load: () => import('./commands/config.ts') },
  { words: ['init', 'join', 'leave', 'join-token', 'info'], load: () => import('./commands/swarm.ts') },
  { words: ['node'], load: () => import('./commands/node.ts') },
  { words: ['service'], load: () => import('./commands/service.ts') },
  { words: ['image', 'images', 'pull', 'push', 'rmi', 'tag', 'import', 'save', 'load'], load: () => import('./commands/image.ts') },
  { words: ['login', 'logout'], load: () => import('./commands/login.ts') },
  { words: ['network'], load: () => import('./commands/network.ts') },
  { words: ['cluster'], load: () => import('./commands/unlock.ts') },
];

/**
 * The commands that argv's first word can select (in COMMAND_MODULES order), or every command
 * when no module claims the word (help, unknown commands).
 */
export async function loadCommands(first: string | undefined, modules: CommandModule[] = COMMAND_MODULES): Promise<Command[]> {
  const mine = modules.filter((m) => first !== undefined && m.words.includes(first));
  const chosen = mine.length > 0 ? mine : modules;
  return (await Promise.all(chosen.map((m) => m.load()))).flatMap((m) => m.commands);
}
