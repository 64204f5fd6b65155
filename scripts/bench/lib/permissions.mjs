// The permission set the permissions benchmark loads into meshext-vip-permissions: a Mesh that forbids access by
// default, and MeshTrafficPermissions with IDENTITIES allow rules (one Exact spiffeID each) over the bench's
// services, so every identity has a verdict in the kernel; plus a deny and a shadow rule that match nobody the
// clients run as. The clients run in the cgroup of the first identity (a systemd unit), so each of their connects
// looks its verdict up.

export const IDENTITIES = 1000;
/** The cgroup (relative to the agent's) that identity i lives in: a systemd service, named by the unit rule. */
export const identityCgroup = (i) => `system.slice/bench-w${i}.service`;
const TD = 'spiffe://default.default.mesh.local';

/** Universal YAML: the forbidding Mesh and the MeshTrafficPermissions (IDENTITIES rules in all). */
export function permissionSet(node) {
  const docs = ['type: Mesh\nname: default\nrouting:\n  defaultForbidMeshExternalServiceAccess: true'];
  const perPolicy = 100;
  for (let p = 0; p < IDENTITIES / perPolicy; p++) {
    const rules = [];
    for (let i = p * perPolicy; i < (p + 1) * perPolicy; i++) {
      rules.push(`  - default:\n      allow:\n      - spiffeID: {type: Exact, value: "${TD}/host/${node}/unit/bench-w${i}.service"}`);
    }
    docs.push(`type: MeshTrafficPermission\nname: bench-allow-${p}\nmesh: default\nspec:\n  targetRef: {kind: Mesh}\n  rules:\n${rules.join('\n')}`);
  }
  docs.push(`type: MeshTrafficPermission
name: bench-deny
mesh: default
spec:
  targetRef: {kind: Mesh}
  rules:
  - default:
      deny:
      - spiffeID: {type: Prefix, value: "${TD}/ns/legacy"}
      allowWithShadowDeny:
      - spiffeID: {type: Exact, value: "${TD}/ns/shop/sa/audit"}`);
  return docs.join('\n---\n') + '\n';
}
