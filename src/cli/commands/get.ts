/** `meshext get meshexternalservices|hostnamegenerators|meshes --config DIR`: what meshext would serve. */
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { loadResources } from '../../resources/load.js';
import type { LoadResult } from '../../resources/types.js';
import { Ipam, defaultStateDir } from '../../ipam/ipam.js';
import { createLogger } from '../../log.js';
import { compileSnapshot } from '../../snapshot/compile.js';
import { checkReferences, byKind } from '../../snapshot/references.js';
import type { CompiledService, RejectedResource } from '../../snapshot/types.js';
import { defaultGenerators } from '../../hostnames/defaults.js';
import { skippedLine, violationLines, warningLine } from '../report.js';
import { renderTable } from '../table.js';

const TYPES: Record<string, 'mes' | 'hg' | 'mesh'> = {
  meshexternalservices: 'mes',
  meshexternalservice: 'mes',
  mes: 'mes',
  extsvc: 'mes',
  hostnamegenerators: 'hg',
  hostnamegenerator: 'hg',
  hg: 'hg',
  meshes: 'mesh',
  mesh: 'mesh',
};

interface GetOptions {
  config?: string[];
  mesh?: string;
  output: string;
  stateDir: string;
  vipCidr?: string;
  zone: string;
  skipDefaultGenerators?: boolean;
}

export function register(program: Command): void {
  program
    .command('get')
    .description('List resources as meshext serves them (VIPs, hostnames, endpoints, conditions)')
    .argument('<type>', 'meshexternalservices (mes, extsvc), hostnamegenerators (hg) or meshes')
    .requiredOption('-c, --config <paths...>', 'configuration files or directories')
    .option('--mesh <name>', 'only this mesh')
    .option('-o, --output <format>', 'table, json or yaml', 'table')
    .option('--state-dir <dir>', 'directory of persisted VIPs (env MESHEXT_STATE_DIR)', defaultStateDir())
    .option('--vip-cidr <cidr>', 'VIP CIDR (env KUMA_IPAM_MESH_EXTERNAL_SERVICE_CIDR)', process.env.KUMA_IPAM_MESH_EXTERNAL_SERVICE_CIDR)
    .option('--zone <name>', 'local zone name', process.env.KUMA_MULTIZONE_ZONE_NAME ?? 'default')
    .option('--skip-default-generators', 'do not add Kuma\'s default local-mesh-external-service generator')
    .action(async (type: string, opts: GetOptions) => {
      const kind = TYPES[type.toLowerCase()];
      if (!kind) throw new Error(`unknown resource type "${type}" (meshexternalservices|mes|extsvc, hostnamegenerators|hg, meshes)`);
      if (!['table', 'json', 'yaml'].includes(opts.output)) throw new Error(`unknown output format "${opts.output}" (table, json, yaml)`);
      const load = await loadResources(opts.config ?? [], { zone: opts.zone, ...(opts.vipCidr ? { vipCidr: opts.vipCidr } : {}) });
      for (const s of load.skipped ?? []) process.stderr.write(skippedLine(s) + '\n');
      for (const w of load.warnings) process.stderr.write(warningLine(w) + '\n');
      let items: Array<Record<string, unknown>>;
      let table: string;
      if (kind === 'mes') {
        // State-file repairs and a CIDR change are told on stderr, as the agent would log them.
        const log = createLogger({ format: 'text', level: 'warn', stream: process.stderr });
        const ipam = await Ipam.open({ stateDir: opts.stateDir, ...(opts.vipCidr ? { cidr: opts.vipCidr } : {}), log });
        const snap = await compileSnapshot({ load, ipam, zone: opts.zone, skipDefaultGenerators: opts.skipDefaultGenerators === true });
        reportProblems(snap.rejected);
        const svcs = snap.services.filter((s) => opts.mesh === undefined || s.mesh === opts.mesh);
        items = svcs.map(serviceView);
        table = renderTable(
          ['NAME', 'MESH', 'VIP', 'PORT', 'PROTOCOL', 'HOSTNAMES', 'ENDPOINTS', 'TLS', 'WHO MAY CONNECT'],
          svcs.map((s) => [s.name, s.mesh, s.vip, String(s.port), s.protocol, s.hostnames.join(',') || '-', endpointsText(s), s.tls ? s.tls.mode : '-', accessText(s)]),
        );
      } else {
        reportProblems([...loadProblems(load), ...checkReferences(load)]);
        if (kind === 'hg') {
          const user = byKind(load.resources, 'HostnameGenerator');
          const builtin = opts.skipDefaultGenerators ? [] : defaultGenerators(opts.zone).filter((d) => !user.some((u) => u.name === d.name));
          const all = [...builtin.map((g) => ({ g, builtin: true })), ...user.map((g) => ({ g, builtin: false }))];
          items = all.map(({ g, builtin: b }) => ({ name: g.name, selector: g.spec.selector, template: g.spec.template, builtin: b, labels: g.labels }));
          table = renderTable(
            ['NAME', 'SELECTS', 'MATCH LABELS', 'TEMPLATE'],
            all.map(({ g, builtin: b }) => {
              const [what, sel] = Object.entries(g.spec.selector ?? {})[0] ?? ['-', {}];
              const labels = Object.entries((sel as { matchLabels?: Record<string, string> }).matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
              return [b ? `${g.name} (built-in)` : g.name, what, labels.join(',') || '(all)', g.spec.template];
            }),
          );
        } else {
          const declared = byKind(load.resources, 'Mesh');
          const names = new Set(declared.map((m) => m.name));
          const implied = [...new Set(byKind(load.resources, 'MeshExternalService').map((s) => s.mesh))].filter((m) => !names.has(m));
          const rows = [
            ...declared.map((m) => ({ name: m.name, declared: true, defaultForbidMeshExternalServiceAccess: m.spec.routing?.defaultForbidMeshExternalServiceAccess === true })),
            ...implied.map((name) => ({ name, declared: false, defaultForbidMeshExternalServiceAccess: false })),
          ].filter((m) => opts.mesh === undefined || m.name === opts.mesh);
          items = rows;
          table = renderTable(
            ['NAME', 'DECLARED', 'FORBID MES ACCESS'],
            rows.map((m) => [m.name, m.declared ? 'yes' : 'no (implied)', String(m.defaultForbidMeshExternalServiceAccess)]),
          );
        }
      }
      if (opts.output === 'json') process.stdout.write(JSON.stringify(items, null, 2) + '\n');
      else if (opts.output === 'yaml') process.stdout.write(stringify(items));
      else process.stdout.write(table);
    });
}

function serviceView(s: CompiledService): Record<string, unknown> {
  return {
    name: s.name,
    mesh: s.mesh,
    kri: s.kri,
    vip: s.vip,
    hostnames: s.hostnames,
    port: s.port,
    protocol: s.protocol,
    endpoints: s.endpoints.map((e) => (e.kind === 'unix' ? { address: `unix://${e.path}` } : { address: e.address, port: e.port })),
    tls: s.tls ? { enabled: true, mode: s.tls.mode, ...(s.tls.serverName ? { serverName: s.tls.serverName } : {}) } : { enabled: false },
    forbidden: s.forbidden,
    access: s.permissions
      ? {
          policies: s.permissions.policies,
          deny: s.permissions.deny,
          allowWithShadowDeny: s.permissions.allowWithShadowDeny,
          allow: s.permissions.allow,
          otherwise: s.permissions.meshDefault,
        }
      : { otherwise: s.forbidden ? 'deny' : 'allow' },
    conditions: s.generatorStatus.flatMap((g) => g.conditions.map((c) => ({ generator: g.generator, ...c }))),
  };
}

/** Who may connect, in one cell: the matchers by list (Prefix as `value*`), then what everyone else gets. */
function accessText(s: CompiledService): string {
  const p = s.permissions;
  if (!p) return s.forbidden ? 'nobody (mesh forbids)' : 'everyone';
  const m = (xs: typeof p.allow): string => xs.map((x) => (x.type === 'Prefix' ? `${x.value}*` : x.value)).join(',');
  const parts = [p.deny.length ? `deny ${m(p.deny)}` : '', p.allowWithShadowDeny.length ? `shadow-deny ${m(p.allowWithShadowDeny)}` : '', p.allow.length ? `allow ${m(p.allow)}` : ''];
  return [...parts.filter(Boolean), `others ${p.meshDefault}`].join('; ');
}

function endpointsText(s: CompiledService): string {
  return s.endpoints.map((e) => (e.kind === 'unix' ? `unix://${e.path}` : e.kind === 'ip' && e.family === 6 ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`)).join(',') || '-';
}

function loadProblems(load: LoadResult): RejectedResource[] {
  return load.errors.map((e) => ({ file: e.file, ...(e.line !== undefined ? { line: e.line } : {}), kind: e.kind ?? '', name: e.name ?? '', violations: e.violations }));
}

function reportProblems(rejected: RejectedResource[]): void {
  for (const r of rejected) for (const line of violationLines(r)) process.stderr.write(line + '\n');
}
