/** `meshext` command line: every subcommand lives in `src/cli/commands/<name>.ts` and registers itself. */
import { Command } from 'commander';

export interface CommandModule {
  register(program: Command): void;
}

const modules: Array<() => Promise<CommandModule>> = [
  // One line per subcommand module; keep sorted.
  () => import('./commands/bpf.js'),
  () => import('./commands/cleanup.js'),
  () => import('./commands/get.js'),
  () => import('./commands/hold-sockets.js'),
  () => import('./commands/probe.js'),
  () => import('./commands/run.js'),
  () => import('./commands/validate.js'),
];

export async function main(argv: string[]): Promise<void> {
  const program = new Command('meshext')
    .description('Transparent egress agent: Kuma-compatible MeshExternalService on a Linux node')
    .version(process.env.npm_package_version ?? '0.1.0')
    .showHelpAfterError();
  for (const load of modules) (await load()).register(program);
  await program.parseAsync(argv);
}

main(process.argv).catch((err: unknown) => {
  const e = err as { message?: string; code?: string };
  process.stderr.write(`meshext: ${e.message ?? String(err)}${e.code ? ` (${e.code})` : ''}\n`);
  process.exitCode = process.exitCode && process.exitCode !== 0 ? process.exitCode : 1;
});
