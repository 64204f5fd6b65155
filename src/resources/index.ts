/** Public face of the resources module: loading, parsing and validating Kuma resources. */
export type {
  SourceRef,
  Violation,
  LoadError,
  LoadWarning,
  LoadResult,
  LoadOptions,
  Resource,
  ResourceKind,
  ResourceFormat,
  DataSource,
  MeshExternalServiceResource,
  MeshExternalServiceSpec,
  HostnameGeneratorResource,
  HostnameGeneratorSpec,
  MeshResource,
  MeshSpec,
  SecretResource,
  SecretSpec,
  DataplaneResource,
  DataplaneSpec,
  DataplaneOutbound,
  LabelSelector,
  MeshTimeoutResource,
  MeshTrafficPermissionResource,
  MeshTimeoutSpec,
  MeshTimeoutConf,
  MeshRetryResource,
  MeshRetrySpec,
  MeshRetryConf,
  MeshAccessLogResource,
  MeshAccessLogSpec,
  MeshAccessLogConf,
  MeshAccessLogBackend,
  MeshAccessLogFormat,
  PolicyTargetRef,
  ToPolicySpec,
} from './types.js';
export { POLICY_KINDS, POLICY_KIND_NAMES, isPolicyKind, type PolicyKind } from './policy-kinds.js';
export { displayNameOf } from './types.js';
export { loadResources, mergeResults } from './load.js';
export { parseResourceText } from './parse.js';
export { referencedSecrets } from './validate-mes.js';
export { isDnsName, isIpAddress, unixPath } from './address.js';
export { parseGoDuration } from './duration.js';
