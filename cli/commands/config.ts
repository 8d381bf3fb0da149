// `gantry config create|ls|inspect|rm`: the same commands as secrets (cli/commands/secret.ts) on
// configs, which differ only in where they are mounted and their size limit (1000 KB).
import type { Command } from '../command.ts';
import { secretCommands } from './secret.ts';

export const commands: Command[] = secretCommands('config');
