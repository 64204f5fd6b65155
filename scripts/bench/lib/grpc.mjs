// The gRPC call of the gRPC scenario, built by hand so that h2load (which only posts a file) can make it:
// service meshext.bench.Echo, method Call, request and response `message Msg { bytes payload = 1; }`.
// Pure: tested in test/unit/bench-stats.test.ts.

export const GRPC_PATH = '/meshext.bench.Echo/Call';
export const GRPC_REQUEST_PAYLOAD = 'meshext bench grpc request payload';
export const GRPC_RESPONSE_PAYLOAD = 'hello from the meshext bench upstream\n';

/** Protobuf bytes of `Msg{payload}` (field 1, length-delimited; payloads here are under 128 bytes). */
export function encodeMsg(payload) {
  const p = Buffer.from(payload);
  if (p.length > 127) throw new RangeError(`encodeMsg: payload of ${p.length} bytes needs a longer varint than this helper writes`);
  return Buffer.concat([Buffer.from([0x0a, p.length]), p]);
}

/** The payload of a protobuf `Msg`, or throws naming what is wrong with the bytes. */
export function decodeMsg(buf) {
  if (buf.length === 0) return Buffer.alloc(0); // proto3: an empty message has the default (empty) payload
  if (buf[0] !== 0x0a || buf.length < 2 || buf[1] > 127 || buf.length !== 2 + buf[1]) {
    throw new Error(`decodeMsg: not a Msg{payload} of under 128 bytes: ${buf.toString('hex')}`);
  }
  return buf.subarray(2);
}

/** A gRPC length-prefixed message: compressed flag 0, big-endian length, the message. */
export function grpcFrame(message) {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]);
}

/** The framed request h2load posts. */
export function grpcRequestFrame() {
  return grpcFrame(encodeMsg(GRPC_REQUEST_PAYLOAD));
}

/** The framed response the upstream sends (its DATA bytes per successful call). */
export function grpcResponseFrame() {
  return grpcFrame(encodeMsg(GRPC_RESPONSE_PAYLOAD));
}
