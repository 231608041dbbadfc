/**
 * Pure helpers of the Logs tab and its charts: how an invocation's status
 * reads, which filters an item matches, and how the server's statistics turn
 * into the columns a chart draws. Unit-tested; the components only ask.
 */
import type { Invocation, InvocationFilter, InvocationStats, StatsBucket, StatsWindow } from './api';

/** Whether an invocation failed: an error status or code, or a 5xx answer. */
export function isFailure(invocation: Pick<Invocation, 'status' | 'error_code'>): boolean {
	if (invocation.error_code) return true;
	const status = invocation.status;
	if (typeof status === 'number') return status >= 500;
	if (status === 'error') return true;
	const numeric = Number(status);
	return Number.isInteger(numeric) && numeric >= 500;
}

/** The words of an invocation's status: `ok`, `error`, or the HTTP status, with the error code. */
export function statusLabel(invocation: Pick<Invocation, 'status' | 'error_code'>): string {
	const status = String(invocation.status ?? '');
	if (invocation.error_code && invocation.error_code !== status) {
		return status && status !== 'error' ? `${status} ${invocation.error_code}` : invocation.error_code;
	}
	return status || (isFailure(invocation) ? 'error' : 'ok');
}

/** A duration in milliseconds as people read it: `3 ms`, `1.25 s`. */
export function formatDuration(ms: number | null | undefined): string {
	if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
	if (ms === 0) return '0 ms';
	if (ms < 1) return `${Number(ms.toFixed(2))} ms`;
	if (ms < 1000) return `${Math.round(ms)} ms`;
	return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

/** A byte count as people read it: `512 B`, `1.5 KiB`, `32 MiB`. */
export function formatBytes(bytes: number | null | undefined): string {
	if (bytes === null || bytes === undefined) return '—';
	const units = ['B', 'KiB', 'MiB', 'GiB'];
	let value = bytes;
	let unit = 0;
	while (value >= 1024 && unit < units.length - 1) {
		value /= 1024;
		unit += 1;
	}
	return `${unit === 0 ? value : Number(value.toFixed(1))} ${units[unit]}`;
}

/** A share (0 to 1) as a whole percentage clamped to 0–100, or null when unknown. */
export function sharePercent(share: number | null | undefined): number | null {
	if (share === null || share === undefined || Number.isNaN(share)) return null;
	return Math.min(100, Math.max(0, Math.round(share * 100)));
}

/** The time ranges the Logs tab offers, and how far back each goes. */
export const TIME_RANGES = {
	'15m': { label: 'Last 15 minutes', ms: 15 * 60_000 },
	'1h': { label: 'Last hour', ms: 3_600_000 },
	'24h': { label: 'Last 24 hours', ms: 86_400_000 },
	'7d': { label: 'Last 7 days', ms: 7 * 86_400_000 },
	all: { label: 'Any time', ms: null }
} as const;
export type TimeRange = keyof typeof TIME_RANGES;

/** The list filter for the Logs tab's controls, `now` in ms since the epoch. */
export function listFilter(
	controls: { script: string; status: string; range: TimeRange },
	now: number
): InvocationFilter {
	const back = TIME_RANGES[controls.range].ms;
	return {
		script: controls.script || undefined,
		status: controls.status || undefined,
		since: back === null ? undefined : new Date(now - back).toISOString()
	};
}

/** Whether a live invocation belongs in a list shown with `filter`. */
export function matchesFilter(invocation: Invocation, filter: InvocationFilter): boolean {
	if (filter.script && invocation.script !== filter.script) return false;
	if (filter.status === 'ok' && isFailure(invocation)) return false;
	if (filter.status === 'error' && !isFailure(invocation)) return false;
	if (filter.status && filter.status !== 'ok' && filter.status !== 'error') {
		if (String(invocation.status) !== filter.status) return false;
	}
	if (filter.since && startedMs(invocation) < Date.parse(filter.since)) return false;
	return true;
}

/** When an invocation started, in ms since the epoch. */
export function startedMs(invocation: Pick<Invocation, 'started_at' | 'started_at_ms'>): number {
	if (typeof invocation.started_at_ms === 'number') return invocation.started_at_ms;
	return Date.parse(invocation.started_at);
}

/** Adds live invocations to a list, newest first, without duplicates. */
export function mergeNewest(list: Invocation[], arrived: Invocation[]): Invocation[] {
	const seen = new Set(list.map((item) => String(item.id)));
	const fresh = arrived.filter((item) => !seen.has(String(item.id)));
	return [...fresh, ...list].sort((a, b) => startedMs(b) - startedMs(a));
}

/** A bucket's start in seconds since the epoch (the server may send RFC 3339, seconds or ms). */
export function bucketSeconds(start: StatsBucket['start']): number {
	if (typeof start === 'number') return start > 1e11 ? start / 1000 : start;
	return Date.parse(start) / 1000;
}

export type ChartMetric = 'count' | 'errors' | 'latency';

/** The columns a chart draws: shared x values (seconds) and one line per series. */
export interface ChartData {
	x: number[];
	lines: { label: string; script: string; dashed: boolean; values: (number | null)[] }[];
}

/**
 * The statistics as chart columns for one metric. Scripts' buckets are
 * aligned on the union of their starts; a bucket a script lacks counts 0
 * invocations and has no latency. Latency draws average and p95 per script.
 */
export function chartData(stats: InvocationStats, metric: ChartMetric): ChartData {
	const x = [...new Set(stats.series.flatMap((series) => series.buckets.map((bucket) => bucketSeconds(bucket.start))))]
		.filter((value) => Number.isFinite(value))
		.sort((a, b) => a - b);
	const lines: ChartData['lines'] = [];
	for (const series of stats.series) {
		const byStart = new Map(series.buckets.map((bucket) => [bucketSeconds(bucket.start), bucket]));
		const column = (pick: (bucket: StatsBucket) => number | null, missing: number | null) =>
			x.map((start) => {
				const bucket = byStart.get(start);
				return bucket ? (pick(bucket) ?? missing) : missing;
			});
		if (metric === 'count') {
			lines.push({ label: series.script, script: series.script, dashed: false, values: column((b) => b.count, 0) });
		} else if (metric === 'errors') {
			lines.push({ label: series.script, script: series.script, dashed: false, values: column((b) => b.errors, 0) });
		} else {
			lines.push({
				label: `${series.script} avg`,
				script: series.script,
				dashed: false,
				values: column((b) => (b.count > 0 ? b.avg_ms : null), null)
			});
			lines.push({
				label: `${series.script} p95`,
				script: series.script,
				dashed: true,
				values: column((b) => (b.count > 0 ? b.p95_ms : null), null)
			});
		}
	}
	return { x, lines };
}

/** Totals per script for the text beside the charts: count, errors, worst p95. */
export function statsSummary(stats: InvocationStats) {
	return stats.series.map((series) => {
		const count = series.buckets.reduce((sum, bucket) => sum + bucket.count, 0);
		const errors = series.buckets.reduce((sum, bucket) => sum + bucket.errors, 0);
		const weighted = series.buckets.reduce((sum, bucket) => sum + (bucket.avg_ms ?? 0) * bucket.count, 0);
		const p95s = series.buckets.map((bucket) => bucket.p95_ms).filter((value): value is number => value !== null);
		return {
			script: series.script,
			count,
			errors,
			avgMs: count > 0 ? weighted / count : null,
			worstP95Ms: p95s.length > 0 ? Math.max(...p95s) : null
		};
	});
}

export const STATS_WINDOWS: readonly StatsWindow[] = ['1h', '24h', '7d'];

/** A stable colour per script name, from a palette readable on white. */
const PALETTE = ['#4338ca', '#0f766e', '#b45309', '#be185d', '#1d4ed8', '#15803d', '#7c3aed', '#9f1239'];
export function scriptColour(script: string, scripts: readonly string[]): string {
	const index = scripts.indexOf(script);
	return PALETTE[(index < 0 ? 0 : index) % PALETTE.length] ?? '#4338ca';
}
