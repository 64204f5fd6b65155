/**
 * The policy kinds meshext reads, in one table: adding a kind is an entry here (schema, semantic rules, the
 * Kubernetes plural the source watches) plus its resource type in types.ts. parse.ts, schema.ts, warnings.ts
 * and the Kubernetes source take the kind list from here.
 */
import type { MeshCircuitBreakerSpec, MeshHealthCheckSpec, MeshTimeoutSpec, MeshTrafficPermissionSpec, Violation } from './types.js';
import { meshCircuitBreakerSpecSchema, meshHealthCheckSpecSchema, meshTimeoutSpecSchema, meshTrafficPermissionSpecSchema } from './schemas.js';
import { validateMeshTimeout } from './validate-meshtimeout.js';
import { validateMeshTrafficPermission } from './validate-meshtrafficpermission.js';
import { validateMeshCircuitBreaker } from './validate-meshcircuitbreaker.js';
import { validateMeshHealthCheck } from './validate-meshhealthcheck.js';

export interface PolicyKindDef {
  /** The spec's JSON Schema (ajv stage). */
  schema: object;
  /** Kuma's semantic rules and meshext's refusals, on a spec that passed the schema; paths start at `spec`. */
  validate(spec: unknown): Violation[];
  /** The Kubernetes resource plural (kuma.io/v1alpha1), read in the system namespace. */
  plural: string;
}

export const POLICY_KINDS = {
  MeshTimeout: { schema: meshTimeoutSpecSchema, validate: (s: unknown) => validateMeshTimeout(s as MeshTimeoutSpec), plural: 'meshtimeouts' },
  MeshTrafficPermission: {
    schema: meshTrafficPermissionSpecSchema,
    validate: (s: unknown) => validateMeshTrafficPermission(s as MeshTrafficPermissionSpec),
    plural: 'meshtrafficpermissions',
  },
  MeshCircuitBreaker: { schema: meshCircuitBreakerSpecSchema, validate: (s: unknown) => validateMeshCircuitBreaker(s as MeshCircuitBreakerSpec), plural: 'meshcircuitbreakers' },
  MeshHealthCheck: { schema: meshHealthCheckSpecSchema, validate: (s: unknown) => validateMeshHealthCheck(s as MeshHealthCheckSpec), plural: 'meshhealthchecks' },
} as const satisfies Record<string, PolicyKindDef>;

export type PolicyKind = keyof typeof POLICY_KINDS;

export const POLICY_KIND_NAMES = Object.keys(POLICY_KINDS) as PolicyKind[];

/** Whether `kind` is one of the policy kinds. */
export function isPolicyKind(kind: string): kind is PolicyKind {
  return Object.prototype.hasOwnProperty.call(POLICY_KINDS, kind);
}
