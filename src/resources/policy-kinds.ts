/**
 * The policy kinds meshext reads, in one table: adding a kind is an entry here (schema, semantic rules, the
 * Kubernetes plural the source watches) plus its resource type in types.ts. parse.ts, schema.ts, warnings.ts
 * and the Kubernetes source take the kind list from here.
 */
import type { MeshAccessLogSpec, MeshCircuitBreakerSpec, MeshHealthCheckSpec, MeshRetrySpec, MeshTimeoutSpec, MeshTrafficPermissionSpec, Violation } from './types.js';
import { meshAccessLogSpecSchema, meshCircuitBreakerSpecSchema, meshHealthCheckSpecSchema, meshRetrySpecSchema, meshTimeoutSpecSchema, meshTrafficPermissionSpecSchema } from './schemas.js';
import { validateMeshAccessLog } from './validate-meshaccesslog.js';
import { meshCircuitBreakerWarnings, validateMeshCircuitBreaker } from './validate-meshcircuitbreaker.js';
import { validateMeshHealthCheck } from './validate-meshhealthcheck.js';
import { validateMeshRetry } from './validate-meshretry.js';
import { validateMeshTimeout } from './validate-meshtimeout.js';
import { validateMeshTrafficPermission } from './validate-meshtrafficpermission.js';
import { targetRefWarnings, toPolicyWarnings } from './validate-policy.js';

export interface PolicyKindDef {
  /** The spec's JSON Schema (ajv stage). */
  schema: object;
  /** Kuma's semantic rules and meshext's refusals, on a spec that passed the schema; paths start at `spec`. */
  validate(spec: unknown): Violation[];
  /** What is accepted but ignored on a node agent, said as warnings (validate-policy.ts toPolicyWarnings). */
  warnings?: (spec: unknown) => Violation[];
  /** The Kubernetes resource plural (kuma.io/v1alpha1), read in the system namespace. */
  plural: string;
}

export const POLICY_KINDS = {
  MeshTimeout: {
    schema: meshTimeoutSpecSchema,
    validate: (s: unknown) => validateMeshTimeout(s as MeshTimeoutSpec),
    warnings: toPolicyWarnings('timeouts'),
    plural: 'meshtimeouts',
  },
  MeshRetry: {
    schema: meshRetrySpecSchema,
    validate: (s: unknown) => validateMeshRetry(s as MeshRetrySpec),
    warnings: toPolicyWarnings('retries'),
    plural: 'meshretries',
  },
  MeshTrafficPermission: {
    schema: meshTrafficPermissionSpecSchema,
    validate: (s: unknown) => validateMeshTrafficPermission(s as MeshTrafficPermissionSpec),
    plural: 'meshtrafficpermissions',
  },
  MeshAccessLog: {
    schema: meshAccessLogSpecSchema,
    validate: (s: unknown) => validateMeshAccessLog(s as MeshAccessLogSpec),
    warnings: toPolicyWarnings('access logs'),
    plural: 'meshaccesslogs',
  },
  MeshCircuitBreaker: {
    schema: meshCircuitBreakerSpecSchema,
    validate: (s: unknown) => validateMeshCircuitBreaker(s as MeshCircuitBreakerSpec),
    warnings: meshCircuitBreakerWarnings,
    plural: 'meshcircuitbreakers',
  },
  MeshHealthCheck: {
    schema: meshHealthCheckSpecSchema,
    validate: (s: unknown) => validateMeshHealthCheck(s as MeshHealthCheckSpec),
    warnings: toPolicyWarnings('health checks'),
    plural: 'meshhealthchecks',
  },
} as const satisfies Record<string, PolicyKindDef>;

export type PolicyKind = keyof typeof POLICY_KINDS;

export const POLICY_KIND_NAMES = Object.keys(POLICY_KINDS) as PolicyKind[];

/** Warnings of a policy of `kind` that passed validation: what a node agent accepts and ignores. */
export function policyWarnings(kind: PolicyKind, spec: unknown): Violation[] {
  const def: PolicyKindDef = POLICY_KINDS[kind];
  const ignored = targetRefWarnings(spec);
  return ignored.length > 0 ? ignored : (def.warnings?.(spec) ?? []);
}

/** Whether `kind` is one of the policy kinds. */
export function isPolicyKind(kind: string): kind is PolicyKind {
  return Object.prototype.hasOwnProperty.call(POLICY_KINDS, kind);
}
