/** HostnameGenerator rules (Kuma 2.14 validate.go): one selector, a template that parses and renders a DNS name. */
import type { HostnameGeneratorSpec, Violation } from './types.js';
import { Template } from '../hostnames/template.js';
import { dns1123SubdomainErrors } from './address.js';

/** Stub data Kuma 2.14 renders a template with at write time. */
const STUB = { Name: 'name', DisplayName: 'displayname', Namespace: 'namespace', Mesh: 'mesh', Zone: 'zone' };

export function validateHostnameGenerator(spec: HostnameGeneratorSpec): Violation[] {
  const out: Violation[] = [];
  const sel = spec.selector ?? {};
  const count = [sel.meshService, sel.meshExternalService, sel.meshMultiZoneService].filter((s) => s !== undefined).length;
  if (count !== 1) out.push({ field: 'spec.selector', message: 'exact one selector (meshService, meshExternalService) must be defined' });
  if (spec.template === '') {
    out.push({ field: 'spec.template', message: 'must not be empty' });
  } else {
    let tmpl: Template | undefined;
    try {
      tmpl = Template.parse(spec.template);
    } catch (e) {
      out.push({ field: 'spec.template', message: `couldn't parse template: ${(e as Error).message}` });
    }
    if (tmpl) {
      try {
        const rendered = tmpl.execute(STUB, { label: () => 'label' });
        const errs = dns1123SubdomainErrors(rendered);
        if (errs.length > 0) {
          out.push({ field: 'spec.template', message: `template renders to "${rendered}" which is not a valid DNS name: ${errs.join(', ')}` });
        }
      } catch (e) {
        out.push({ field: 'spec.template', message: `couldn't render template with stub values: ${(e as Error).message}` });
      }
    }
  }
  if (spec.extension !== undefined && spec.extension.type === '') out.push({ field: 'spec.extension.type', message: 'must not be empty' });
  return out;
}
