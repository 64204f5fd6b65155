/**
 * Hostname generation (Kuma's HostnameGenerator loop) with status conditions.
 *
 * Ordering (deterministic, our stand-in for Kuma's creation time): generators with `kuma.io/origin: zone`
 * first, then declaration order (built-in defaults count as oldest), then name; services in declaration
 * order (file load order, then document order), then name. Generators are the outer loop; the first
 * service to claim a hostname keeps it.
 *
 * Collisions: Kuma detects them per mesh. One node's DNS can map a name to only one VIP, so meshext
 * detects them across meshes too (the message names the mesh then). The loser's condition names the
 * service that owns the name (Kuma's message names the loser itself, which tells the user nothing).
 */
import type { Condition } from '../snapshot/types.js';
import type { HostnameGeneratorResource, LabelSelector, MeshExternalServiceResource } from '../resources/types.js';
import { displayNameOf } from '../resources/types.js';
import { Template } from './template.js';
import { dns1123SubdomainErrors } from '../resources/address.js';

export interface GeneratedNames {
  hostnames: string[];
  generatorStatus: Array<{ generator: string; conditions: Condition[] }>;
}

/** `mesh/name`, the service identity used everywhere. */
export const serviceId = (r: { mesh: string; name: string }): string => `${r.mesh}/${r.name}`;

/** True when every matchLabels entry is present with an equal value (empty selector matches all). */
export function selectorMatches(sel: LabelSelector | undefined, labels: Record<string, string>): boolean {
  return Object.entries(sel?.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
}

function order<T extends { labels: Record<string, string>; name: string }>(xs: T[], zoneFirst: boolean): T[] {
  return xs
    .map((x, i) => ({ x, i }))
    .sort((a, b) => {
      if (zoneFirst) {
        const za = a.x.labels['kuma.io/origin'] === 'zone' ? 0 : 1;
        const zb = b.x.labels['kuma.io/origin'] === 'zone' ? 0 : 1;
        if (za !== zb) return za - zb;
      }
      return a.i - b.i || a.x.name.localeCompare(b.x.name);
    })
    .map((e) => e.x);
}

const generated = (): Condition => ({ type: 'Generated', status: 'True', reason: 'Generated', message: '' });
const failed = (reason: 'TemplateError' | 'Collision', message: string): Condition => ({ type: 'Generated', status: 'False', reason, message });

/** Validates a rendered hostname: lowercase RFC 1123, ≤253 chars, labels ≤63 (decision 3). */
export function hostnameErrors(h: string): string[] {
  const errs = dns1123SubdomainErrors(h);
  if (h.split('.').some((l) => l.length > 63)) errs.push('a DNS label must be no more than 63 characters');
  return errs;
}

/** Renders every selecting generator for every service; keys of the result are service ids. */
export function generateHostnames(input: {
  services: MeshExternalServiceResource[];
  generators: HostnameGeneratorResource[];
  zone: string;
}): Map<string, GeneratedNames> {
  const result = new Map<string, GeneratedNames>();
  const services = order(input.services, false);
  for (const s of services) result.set(serviceId(s), { hostnames: [], generatorStatus: [] });
  const owners = new Map<string, MeshExternalServiceResource>();

  for (const g of order(input.generators, true)) {
    const sel = g.spec.selector?.meshExternalService;
    if (!sel) continue; // a generator for MeshService/MeshMultiZoneService leaves no trace on a MES
    let tmpl: Template | undefined;
    let parseError: string | undefined;
    try {
      tmpl = Template.parse(g.spec.template);
    } catch (e) {
      parseError = (e as Error).message;
    }
    for (const s of services) {
      if (!selectorMatches(sel, s.labels)) continue;
      const entry = result.get(serviceId(s)) as GeneratedNames;
      const status = { generator: g.name, conditions: [] as Condition[] };
      entry.generatorStatus.push(status);
      if (!tmpl) {
        status.conditions.push(failed('TemplateError', `failed compiling gotemplate error="${parseError ?? ''}"`));
        continue;
      }
      let host: string;
      try {
        host = tmpl.execute(
          {
            Name: s.name,
            DisplayName: displayNameOf(s),
            Namespace: s.labels['k8s.kuma.io/namespace'] ?? '',
            Zone: s.labels['kuma.io/zone'] ?? input.zone,
            Mesh: s.mesh,
          },
          {
            label: (k) => {
              const v = s.labels[k];
              if (v === undefined) throw new Error(`label ${k} not found`);
              return v;
            },
          },
        );
      } catch (e) {
        status.conditions.push(failed('TemplateError', `pre evaluation of template with parameters failed with error="${(e as Error).message}"`));
        continue;
      }
      const errs = hostnameErrors(host);
      if (errs.length > 0) {
        status.conditions.push(failed('TemplateError', `generated hostname "${host}" is not a valid DNS name: ${errs.join(', ')}`));
        continue;
      }
      const owner = owners.get(host);
      if (owner && owner !== s) {
        const where = owner.mesh === s.mesh ? '' : ` in mesh ${owner.mesh}`;
        status.conditions.push(failed('Collision', `Hostname collision with MeshExternalService: ${owner.name}${where}`));
        continue;
      }
      owners.set(host, s);
      if (!entry.hostnames.includes(host)) entry.hostnames.push(host);
      status.conditions.push(generated());
    }
  }
  return result;
}
