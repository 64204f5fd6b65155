/**
 * Listen addresses and who can reach them: the agent's listeners are meant for this node, so one bound
 * elsewhere is an exposure worth a loud line in the log (an open resolver, an open proxy).
 */

/** 127.0.0.0/8, ::1 (also as ::ffff:127.x) and `localhost`. */
export function isLoopback(address: string): boolean {
  return address === '::1' || address === 'localhost' || /^127\.\d+\.\d+\.\d+$/.test(address) || /^::ffff:127\./i.test(address);
}

/** Who can reach a listener on `address`, or undefined when only this node can (loopback). */
export function exposureOf(address: string): string | undefined {
  if (isLoopback(address)) return undefined;
  if (address === '0.0.0.0' || address === '::' || address === '') return 'every interface of this node: anything that can reach the node over the network';
  if (/^169\.254\./.test(address) || /^fe[89ab][0-9a-f]:/i.test(address)) return `the link-local address ${address}: everything on that link (on Kubernetes, every pod of this node)`;
  return `${address}: anything that can route to that address`;
}
