/** `meshext validate PATH...`: exit 0 when every resource is valid (warnings allowed), 1 otherwise. */
import type { Command } from 'commander';
import { loadResources } from '../../resources/load.js';
import { checkReferences, rejectedFromLoadError } from '../../snapshot/references.js';
import type { RejectedResource } from '../../snapshot/types.js';
import { skippedLine, violationLines, warningLine } from '../report.js';

export function register(program: Command): void {
  program
    .command('validate')
    .description('Validate MeshExternalService, HostnameGenerator, Mesh, Secret and Dataplane files (Kuma rules)')
    .argument('<paths...>', 'files or directories (recursive); - reads stdin')
    .option('-o, --output <format>', 'text or json', 'text')
    .option('--zone <name>', 'local zone name (kuma.io/zone)', process.env.KUMA_MULTIZONE_ZONE_NAME ?? 'default')
    .option('--vip-cidr <cidr>', 'VIP CIDR (endpoints inside it are rejected)', process.env.KUMA_IPAM_MESH_EXTERNAL_SERVICE_CIDR)
    .action(async (paths: string[], opts: { output: string; zone: string; vipCidr?: string }) => {
      if (opts.output !== 'text' && opts.output !== 'json') throw new Error(`unknown output format "${opts.output}" (text, json)`);
      const load = await loadResources(paths, { zone: opts.zone, ...(opts.vipCidr ? { vipCidr: opts.vipCidr } : {}) });
      const problems: RejectedResource[] = [
        ...load.errors.map(rejectedFromLoadError),
        ...checkReferences(load),
      ];
      if (opts.output === 'json') {
        process.stdout.write(JSON.stringify({ valid: problems.length === 0, resources: load.resources.length, errors: problems, warnings: load.warnings, skipped: load.skipped ?? [] }, null, 2) + '\n');
      } else {
        // Errors on stdout (one per line, for scripts); warnings on stderr with the summary, as kumactl does.
        for (const s of load.skipped ?? []) process.stderr.write(skippedLine(s) + '\n');
        for (const w of load.warnings) process.stderr.write(warningLine(w) + '\n');
        for (const p of problems) for (const line of violationLines(p)) process.stdout.write(line + '\n');
        const bad = new Set(problems.map((p) => `${p.file}\0${p.kind}\0${p.name}\0${p.line ?? ''}`)).size;
        const summary = problems.length === 0 ? `${load.resources.length} resources valid` : `${bad} invalid, ${load.resources.length - checkedRejected(problems, load.errors.length)} valid`;
        const warned = load.warnings.length ? `, ${load.warnings.length} warning${load.warnings.length === 1 ? '' : 's'}` : '';
        process.stderr.write(`${summary}${warned}\n`);
      }
      process.exitCode = problems.length === 0 ? 0 : 1;
    });
}

// Reference failures concern resources that parsed fine and are therefore counted in `resources`.
function checkedRejected(problems: RejectedResource[], loadErrors: number): number {
  return problems.length - loadErrors;
}
