/**
 * The HostnameGenerator a standalone Kuma zone CP creates at start (`local-mesh-external-service`), so a
 * MES is reachable as `<name>.extsvc.mesh.local` without any generator declared — as Kuma users expect.
 * Disabled with `skipDefaultGenerators` (Kuma: KUMA_DEFAULTS_SKIP_HOSTNAME_GENERATORS). A user generator
 * with the same name replaces it, as Kuma never overwrites an existing one.
 */
import type { HostnameGeneratorResource } from '../resources/types.js';

export const DEFAULT_MES_GENERATOR = 'local-mesh-external-service';

/** Kuma's default zone generators for MeshExternalService. */
export function defaultGenerators(zone: string): HostnameGeneratorResource[] {
  return [
    {
      kind: 'HostnameGenerator',
      name: DEFAULT_MES_GENERATOR,
      mesh: '',
      namespace: '',
      labels: { 'kuma.io/origin': 'zone', 'kuma.io/zone': zone, 'kuma.io/env': 'universal' },
      spec: {
        selector: { meshExternalService: { matchLabels: { 'kuma.io/origin': 'zone' } } },
        template: '{{ .DisplayName }}.extsvc.mesh.local',
      },
      source: { file: '<built-in>', index: 0 },
      format: 'universal',
    },
  ];
}
