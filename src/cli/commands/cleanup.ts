/** `meshext cleanup`: detach and unpin every meshext link and map; other programs stay. */
import type { Command } from 'commander';
import { DEFAULT_PIN_ROOT, Redirector } from '../../redirect/index.js';

export function register(program: Command): void {
  program
    .command('cleanup')
    .description('Detach all meshext eBPF links and remove their pins (only objects under the pin root)')
    .option('--pin-root <path>', 'bpffs directory holding meshext pins', DEFAULT_PIN_ROOT)
    .action(async (o: { pinRoot: string }) => {
      const r = await Redirector.cleanup({ pinRoot: o.pinRoot });
      process.stdout.write(`detached ${r.links} links, removed ${r.maps} map pins under ${o.pinRoot}\n`);
    });
}
