/**
 * JSON Schemas of the spec parts, transcribed from Kuma 2.10's structural schemas (CRD `openAPIV3Schema`),
 * including their defaults. Enum order follows Kuma's schema so messages list values as Kuma does.
 * One deliberate change: `endpoints[].port` is not `required` here, because meshext accepts unix-socket
 * endpoints without a port; `schema.ts` reports a missing port for non-unix addresses in schema wording.
 * An object with `properties` lists every field Kuma knows there: others get an "unknown field" warning
 * (`warnings.ts`). Objects meshext reads only in part say `additionalProperties: true`.
 */

const dataSource = {
  type: 'object',
  properties: {
    inline: { type: 'string', format: 'byte' },
    inlineString: { type: 'string' },
    secret: { type: 'string' },
  },
} as const;

const tlsVersion = { type: 'string', enum: ['TLSAuto', 'TLS10', 'TLS11', 'TLS12', 'TLS13'], default: 'TLSAuto' } as const;

const port = { type: 'integer', minimum: 1, maximum: 65535 } as const;

export const meshExternalServiceSpecSchema = {
  type: 'object',
  required: ['match'],
  properties: {
    match: {
      type: 'object',
      required: ['port'],
      properties: {
        type: { type: 'string', enum: ['HostnameGenerator'], default: 'HostnameGenerator' },
        port,
        protocol: { type: 'string', enum: ['tcp', 'grpc', 'http', 'http2'], default: 'tcp' },
      },
    },
    endpoints: {
      type: 'array',
      items: {
        type: 'object',
        required: ['address'],
        properties: {
          address: { type: 'string', minLength: 1 },
          port,
          priority: { type: 'integer', minimum: 0, maximum: 128 },
        },
      },
    },
    extension: {
      type: 'object',
      required: ['type'],
      properties: { type: { type: 'string' }, config: {} },
    },
    tls: {
      type: 'object',
      properties: {
        enabled: { type: 'boolean', default: false },
        allowRenegotiation: { type: 'boolean', default: false },
        version: {
          type: 'object',
          properties: { min: tlsVersion, max: tlsVersion },
        },
        verification: {
          type: 'object',
          properties: {
            mode: { type: 'string', enum: ['SkipSAN', 'SkipCA', 'Secured', 'SkipAll'], default: 'Secured' },
            serverName: { type: 'string' },
            subjectAltNames: {
              type: 'array',
              items: {
                type: 'object',
                required: ['value'],
                properties: {
                  type: { type: 'string', enum: ['Exact', 'Prefix'], default: 'Exact' },
                  value: { type: 'string' },
                },
              },
            },
            caCert: dataSource,
            clientCert: dataSource,
            clientKey: dataSource,
          },
        },
      },
    },
  },
} as const;

const labelSelector = {
  type: 'object',
  properties: { matchLabels: { type: 'object', additionalProperties: { type: 'string' } } },
} as const;

export const hostnameGeneratorSpecSchema = {
  type: 'object',
  required: ['template'],
  properties: {
    selector: {
      type: 'object',
      properties: {
        meshService: labelSelector,
        meshExternalService: labelSelector,
        meshMultiZoneService: labelSelector,
      },
    },
    template: { type: 'string' },
    extension: {
      type: 'object',
      required: ['type'],
      properties: { type: { type: 'string' }, config: {} },
    },
  },
} as const;

/** Only the part of Mesh meshext reads; the rest of a Mesh is accepted untouched. */
export const meshSpecSchema = {
  type: 'object',
  additionalProperties: true,
  properties: {
    routing: {
      type: 'object',
      properties: {
        defaultForbidMeshExternalServiceAccess: { type: 'boolean' },
        zoneEgress: { type: 'boolean' },
        localityAwareLoadBalancing: { type: 'boolean' },
      },
    },
  },
} as const;

export const dataplaneSpecSchema = {
  type: 'object',
  properties: {
    networking: {
      type: 'object',
      additionalProperties: true,
      properties: {
        address: { type: 'string' },
        outbound: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: true,
            required: ['port'],
            properties: {
              port,
              address: { type: 'string' },
              tags: { type: 'object', additionalProperties: { type: 'string' } },
              backendRef: {
                type: 'object',
                properties: {
                  kind: { type: 'string' },
                  name: { type: 'string' },
                  port,
                  labels: { type: 'object', additionalProperties: { type: 'string' } },
                },
              },
            },
          },
        },
      },
    },
  },
} as const;

/** Kuma's common_api TargetRef, as policies write it. */
export const targetRef = {
  type: 'object',
  required: ['kind'],
  properties: {
    kind: { type: 'string' },
    name: { type: 'string' },
    namespace: { type: 'string' },
    labels: { type: 'object', additionalProperties: { type: 'string' } },
    sectionName: { type: 'string' },
    proxyTypes: { type: 'array', items: { type: 'string' } },
    tags: { type: 'object', additionalProperties: { type: 'string' } },
    mesh: { type: 'string' },
  },
} as const;

/** A Go duration string (`1s`, `250ms`); parsed in the semantic stage. */
export const duration = { type: 'string' } as const;

const timeoutConf = {
  type: 'object',
  properties: {
    connectionTimeout: duration,
    idleTimeout: duration,
    http: {
      type: 'object',
      properties: {
        requestTimeout: duration,
        streamIdleTimeout: duration,
        maxStreamDuration: duration,
        maxConnectionDuration: duration,
        requestHeadersTimeout: duration,
      },
    },
  },
} as const;

/**
 * The spec schema of a Kuma 2.10+ policy whose configuration sits in `to[].default` (`conf`). `from` and `rules`
 * (inbound sections) are known so they are rejected by name in the semantic stage, not reported as unknown.
 */
export function toPolicySpecSchema(conf: object): object {
  return {
    type: 'object',
    properties: {
      targetRef,
      to: {
        type: 'array',
        items: { type: 'object', required: ['targetRef'], properties: { targetRef, default: conf } },
      },
      from: { type: 'array', items: { type: 'object', additionalProperties: true, properties: {} } },
      rules: { type: 'array', items: { type: 'object', additionalProperties: true, properties: {} } },
    },
  };
}

/** Kuma 2.10+ MeshTimeout. */
export const meshTimeoutSpecSchema = toPolicySpecSchema(timeoutConf);

const backOff = { type: 'object', properties: { baseInterval: duration, maxInterval: duration } } as const;

const rateLimitedBackOff = {
  type: 'object',
  properties: {
    maxInterval: duration,
    resetHeaders: {
      type: 'array',
      items: {
        type: 'object',
        required: ['format', 'name'],
        properties: {
          format: { type: 'string', enum: ['Seconds', 'UnixTimestamp'] },
          name: { type: 'string', minLength: 1, maxLength: 256, pattern: "^[a-z0-9!#$%&'*+\\-.^_\\x60|~]+$" },
        },
      },
    },
  },
} as const;

const headerMatch = {
  type: 'object',
  required: ['name'],
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 256, pattern: "^[a-z0-9!#$%&'*+\\-.^_\\x60|~]+$" },
    type: { type: 'string', enum: ['Exact', 'Present', 'RegularExpression', 'Absent', 'Prefix'], default: 'Exact' },
    value: { type: 'string' },
  },
} as const;

/** uint32 in Kuma's Go types: a negative value cannot be decoded there either. */
const uint32 = { type: 'integer', minimum: 0, maximum: 4294967295 } as const;

const retryConf = {
  type: 'object',
  properties: {
    tcp: { type: 'object', properties: { maxConnectAttempt: uint32 } },
    http: {
      type: 'object',
      properties: {
        backOff,
        hostSelection: {
          type: 'array',
          items: {
            type: 'object',
            required: ['predicate'],
            properties: {
              predicate: { type: 'string', enum: ['OmitPreviousHosts', 'OmitHostsWithTags', 'OmitPreviousPriorities'] },
              tags: { type: 'object', additionalProperties: { type: 'string' } },
              updateFrequency: { type: 'integer', default: 2 },
            },
          },
        },
        hostSelectionMaxAttempts: { type: 'integer' },
        numRetries: uint32,
        perTryTimeout: duration,
        rateLimitedBackOff,
        retriableRequestHeaders: { type: 'array', items: headerMatch },
        retriableResponseHeaders: { type: 'array', items: headerMatch },
        retryOn: { type: 'array', items: { type: 'string' } },
      },
    },
    grpc: {
      type: 'object',
      properties: {
        backOff,
        numRetries: uint32,
        perTryTimeout: duration,
        rateLimitedBackOff,
        retryOn: { type: 'array', items: { type: 'string', enum: ['Canceled', 'DeadlineExceeded', 'Internal', 'ResourceExhausted', 'Unavailable'] } },
      },
    },
  },
} as const;

/** Kuma 2.10+ MeshRetry. */
export const meshRetrySpecSchema = toPolicySpecSchema(retryConf);

const permissionMatch = {
  type: 'object',
  properties: {
    spiffeID: {
      type: 'object',
      required: ['type', 'value'],
      properties: { type: { type: 'string', enum: ['Exact', 'Prefix'] }, value: { type: 'string' } },
    },
    sni: { type: 'object', additionalProperties: true, properties: {} },
  },
} as const;
const permissionMatches = { type: 'array', items: permissionMatch } as const;

/** Kuma 2.12+ MeshTrafficPermission (`rules`; `from` is known so it is refused by name). */
export const meshTrafficPermissionSpecSchema = {
  type: 'object',
  properties: {
    targetRef,
    rules: {
      type: 'array',
      items: {
        type: 'object',
        required: ['default'],
        properties: {
          default: { type: 'object', properties: { deny: permissionMatches, allow: permissionMatches, allowWithShadowDeny: permissionMatches } },
        },
      },
    },
    from: { type: 'array', items: { type: 'object', additionalProperties: true, properties: {} } },
  },
} as const;

const accessLogFormat = {
  type: 'object',
  required: ['type'],
  properties: {
    type: { type: 'string', enum: ['Plain', 'Json'] },
    plain: { type: 'string' },
    json: {
      type: 'array',
      items: { type: 'object', required: ['key', 'value'], properties: { key: { type: 'string' }, value: { type: 'string' } } },
    },
    omitEmptyValues: { type: 'boolean', default: false },
  },
} as const;

const accessLogConf = {
  type: 'object',
  properties: {
    backends: {
      type: 'array',
      items: {
        type: 'object',
        required: ['type'],
        properties: {
          type: { type: 'string', enum: ['Tcp', 'File', 'OpenTelemetry'] },
          file: { type: 'object', required: ['path'], properties: { format: accessLogFormat, path: { type: 'string', minLength: 1 } } },
          tcp: { type: 'object', required: ['address'], properties: { format: accessLogFormat, address: { type: 'string', minLength: 1 } } },
          // Refused by name in the semantic stage; its shape is Kuma's business.
          openTelemetry: { type: 'object', additionalProperties: true, properties: {} },
        },
      },
    },
  },
} as const;

/** Kuma 2.10+ MeshAccessLog. */
export const meshAccessLogSpecSchema = toPolicySpecSchema(accessLogConf);

const int32 = { type: 'integer', minimum: -2147483648, maximum: 2147483647 } as const;
/** Kubernetes IntOrString (`x-kubernetes-int-or-string`). */
const intOrString = { type: ['integer', 'string'] } as const;

const circuitBreakerConf = {
  type: 'object',
  properties: {
    connectionLimits: {
      type: 'object',
      properties: { maxConnections: uint32, maxConnectionPools: uint32, maxPendingRequests: uint32, maxRetries: uint32, maxRequests: uint32 },
    },
    outlierDetection: {
      type: 'object',
      properties: {
        disabled: { type: 'boolean' },
        interval: duration,
        baseEjectionTime: duration,
        maxEjectionPercent: uint32,
        splitExternalAndLocalErrors: { type: 'boolean' },
        healthyPanicThreshold: intOrString,
        detectors: {
          type: 'object',
          properties: {
            totalFailures: { type: 'object', properties: { consecutive: uint32 } },
            gatewayFailures: { type: 'object', properties: { consecutive: uint32 } },
            localOriginFailures: { type: 'object', properties: { consecutive: uint32 } },
            successRate: { type: 'object', properties: { minimumHosts: uint32, requestVolume: uint32, standardDeviationFactor: intOrString } },
            failurePercentage: { type: 'object', properties: { minimumHosts: uint32, requestVolume: uint32, threshold: uint32 } },
          },
        },
      },
    },
  },
} as const;

/** Kuma 2.10+ MeshCircuitBreaker. */
export const meshCircuitBreakerSpecSchema = toPolicySpecSchema(circuitBreakerConf);

const headerList = {
  type: 'array',
  maxItems: 16,
  items: { type: 'object', required: ['name', 'value'], properties: { name: { type: 'string', minLength: 1 }, value: { type: 'string' } } },
} as const;

const healthCheckConf = {
  type: 'object',
  properties: {
    interval: duration,
    unhealthyInterval: duration,
    timeout: duration,
    unhealthyThreshold: int32,
    healthyThreshold: int32,
    initialJitter: duration,
    intervalJitter: duration,
    intervalJitterPercent: int32,
    failTrafficOnPanic: { type: 'boolean' },
    eventLogPath: { type: 'string' },
    alwaysLogHealthCheckFailures: { type: 'boolean' },
    noTrafficInterval: duration,
    reuseConnection: { type: 'boolean' },
    healthyPanicThreshold: intOrString,
    tcp: { type: 'object', properties: { disabled: { type: 'boolean' }, send: { type: 'string' }, receive: { type: 'array', items: { type: 'string' } } } },
    http: {
      type: 'object',
      properties: {
        disabled: { type: 'boolean' },
        path: { type: 'string' },
        requestHeadersToAdd: { type: 'object', properties: { set: headerList, add: headerList } },
        expectedStatuses: { type: 'array', items: int32 },
      },
    },
    grpc: { type: 'object', properties: { disabled: { type: 'boolean' }, serviceName: { type: 'string' }, authority: { type: 'string' } } },
  },
} as const;

/** Kuma 2.10+ MeshHealthCheck. */
export const meshHealthCheckSpecSchema = toPolicySpecSchema(healthCheckConf);

/** The spec schema of each kind that has one (Secret data is checked in parse.ts). */
export const specSchemas: Partial<Record<string, object>> = {
  MeshExternalService: meshExternalServiceSpecSchema,
  HostnameGenerator: hostnameGeneratorSpecSchema,
  Mesh: meshSpecSchema,
  Dataplane: dataplaneSpecSchema,
};
