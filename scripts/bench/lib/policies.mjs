// The full policy set the policy benchmark loads into meshext-policies: a MeshTimeout, a MeshRetry, a
// MeshCircuitBreaker, a MeshHealthCheck and a MeshAccessLog writing JSON lines to a file, all selecting every
// service of the mesh, with values a production mesh would use (none of them trips during a healthy run).
import { join } from 'node:path';

/** Universal YAML of the policies; the access log goes to `<dir>/access.log`. */
export function policySet(dir) {
  const accessLog = join(dir, 'access.log');
  return `type: MeshTimeout
name: bench-timeouts
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: Mesh}
    default:
      connectionTimeout: 2s
      idleTimeout: 1h
      http:
        requestTimeout: 15s
        streamIdleTimeout: 30m
---
type: MeshRetry
name: bench-retries
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: Mesh}
    default:
      tcp:
        maxConnectAttempt: 3
      http:
        numRetries: 2
        perTryTimeout: 5s
        backOff: {baseInterval: 25ms, maxInterval: 250ms}
        retryOn: [5xx, ConnectFailure, Reset]
      grpc:
        numRetries: 2
        perTryTimeout: 5s
        retryOn: [Unavailable, Canceled]
---
type: MeshCircuitBreaker
name: bench-circuit-breaker
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: Mesh}
    default:
      connectionLimits:
        maxConnections: 4096
        maxPendingRequests: 4096
        maxRequests: 4096
      outlierDetection:
        disabled: false
        baseEjectionTime: 30s
        maxEjectionPercent: 50
        detectors:
          totalFailures: {consecutive: 5}
          gatewayFailures: {consecutive: 5}
          localOriginFailures: {consecutive: 5}
---
type: MeshHealthCheck
name: bench-health
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: Mesh}
    default:
      interval: 1s
      timeout: 500ms
      unhealthyThreshold: 3
      healthyThreshold: 1
      tcp: {}
---
type: MeshAccessLog
name: bench-access-log
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: Mesh}
    default:
      backends:
      - type: File
        file:
          path: ${accessLog}
          format:
            type: Json
            json:
            - {key: start_time, value: '%START_TIME%'}
            - {key: duration_ms, value: '%DURATION%'}
            - {key: service, value: '%UPSTREAM_CLUSTER%'}
            - {key: upstream, value: '%UPSTREAM_HOST%'}
            - {key: method, value: '%REQ(:METHOD)%'}
            - {key: path, value: '%REQ(:PATH)%'}
            - {key: status, value: '%RESPONSE_CODE%'}
            - {key: flags, value: '%RESPONSE_FLAGS%'}
            - {key: bytes_received, value: '%BYTES_RECEIVED%'}
            - {key: bytes_sent, value: '%BYTES_SENT%'}
            - {key: client, value: '%DOWNSTREAM_REMOTE_ADDRESS%'}
`;
}
