// Types for the hand-made gRPC call in grpc.mjs (used by test/unit/bench-stats.test.ts).
export const GRPC_PATH: string;
export const GRPC_REQUEST_PAYLOAD: string;
export const GRPC_RESPONSE_PAYLOAD: string;
export function encodeMsg(payload: string | Buffer): Buffer;
export function decodeMsg(buf: Buffer): Buffer;
export function grpcFrame(message: Buffer): Buffer;
export function grpcRequestFrame(): Buffer;
export function grpcResponseFrame(): Buffer;
