/** `meshext bpf list`: pinned links, maps and kernel counters of a pin root. */
import type { Command } from 'commander';
import { DEFAULT_PIN_ROOT, Redirector, type BpfListing } from '../../redirect/index.js';

function table(l: BpfListing): string {
  const out: string[] = [`pin root: ${l.pinRoot}/v${l.layoutVersion}`];
  if (l.config) out.push(`config: ${JSON.stringify(l.config)}`);
  out.push('', 'LINK ID  PROG ID  ATTACH TYPE    PROGRAM          CGROUP');
  for (const k of l.links) {
    const cg = k.defunct ? '(defunct: cgroup removed)' : (k.cgroupPath ?? `id ${k.cgroupId}`);
    out.push(`${String(k.linkId).padEnd(9)}${String(k.progId).padEnd(9)}${k.attachType.padEnd(15)}${k.program.padEnd(17)}${cg}`);
  }
  if (l.links.length === 0) out.push('(no links)');
  out.push('', 'MAP              ID       ENTRIES  MAX');
  for (const m of l.maps) out.push(`${m.name.padEnd(17)}${String(m.id).padEnd(9)}${String(m.entries).padEnd(9)}${m.maxEntries}`);
  if (l.maps.length === 0) out.push('(no maps)');
  out.push('', 'COUNTER                       VALUE');
  for (const [k, v] of Object.entries(l.counters)) out.push(`meshext_bpf_${k}_total`.padEnd(30) + String(v));
  return out.join('\n') + '\n';
}

export function register(program: Command): void {
  const bpf = program.command('bpf').description('Inspect the eBPF redirect state');
  bpf
    .command('list')
    .description('Show pinned links (attach type, cgroup, program id), maps (entries) and counters')
    .option('--pin-root <path>', 'bpffs directory holding meshext pins', DEFAULT_PIN_ROOT)
    .option('-o, --output <format>', 'table | json', 'table')
    .action((o: { pinRoot: string; output: string }) => {
      if (o.output !== 'table' && o.output !== 'json') {
        throw Object.assign(new Error(`--output: expected "table" or "json", got "${o.output}"`), { code: 'MESHEXT_E_CLI_ARG' });
      }
      const l = Redirector.list({ pinRoot: o.pinRoot });
      process.stdout.write(o.output === 'json' ? JSON.stringify(l, null, 2) + '\n' : table(l));
    });
}
