// Types for the load-generator output parsers in parse.mjs (used by test/unit/bench-stats.test.ts).
export function wrkDurationUs(text: string): number;
export function parseWrk(text: string): { rps: number; p50us: number; p99us: number; errors: number; requests: number };
export function parseH2load(summary: string, log: string): { rps: number; p50us: number; p99us: number; failed: number; total: number; succeeded: number; non2xx: number; dataBytes: number };
