// Entry of the bundled CLI (cli/bundle.ts): a CommonJS bundle has no import.meta.main, so it calls main().
import { main } from './gantry.ts';

main();
