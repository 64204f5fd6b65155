// Types for the pure benchmark helpers in stats.mjs (used by test/unit/bench-stats.test.ts).
export interface Row { name: string; peer?: boolean; direct?: boolean; error?: string; values: Record<string, number[]> }
export interface MedianRow { name: string; peer: boolean; direct: boolean; error?: string; values: Record<string, number> }
export interface Metric { key: string; label: string; higherIsBetter: boolean; noRatio?: boolean }
export interface TargetRule { label: string; metric: string; op: '>=' | '<='; factor: number; against: 'peer' | 'direct' | 'absolute' | (string & {}) }
export interface Verdict { label: string; metric: string; value: number | undefined; reference: number | undefined; bound: number; verdict: string }
export function median(values: number[]): number;
export function percentile(values: number[], p: number): number;
export function percentileSorted(sorted: number[], p: number): number;
export function ratio(value: number | undefined, reference: number | undefined): number;
export function bestPeer(rows: Array<{ name: string; peer: boolean; values: Record<string, number> }>, metric: string, higherIsBetter: boolean): { name: string; value: number } | undefined;
export function verdict(value: number | undefined, op: '>=' | '<=', factor: number, reference: number | undefined): 'PASS' | 'FAIL' | 'n/a';
export function fmtNum(v: number | undefined): string;
export function fmtRatio(r: number): string;
export function formatTable(rows: string[][], format?: 'text' | 'md'): string;
export function scenarioTable(rows: Row[], metrics: Metric[], targets?: TargetRule[], subject?: string): { table: string[][]; summary: Verdict[]; medians: MedianRow[] };
