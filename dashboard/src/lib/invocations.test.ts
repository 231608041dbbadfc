import { describe, expect, it } from 'vitest';
import type { Invocation, InvocationStats } from './api';
import {
	bucketSeconds,
	chartData,
	formatBytes,
	formatDuration,
	isFailure,
	listFilter,
	matchesFilter,
	mergeNewest,
	sharePercent,
	statsSummary,
	statusLabel
} from './invocations';

function invocation(id: number, overrides: Partial<Invocation> = {}): Invocation {
	return {
		id,
		request_id: `r${id}`,
		script: 'hello',
		version_id: 1,
		trigger: 'http',
		status: 'ok',
		error_code: null,
		error_message: null,
		started_at: new Date(id * 1000).toISOString(),
		started_at_ms: id * 1000,
		duration_ms: 3,
		fuel_used: 10,
		fuel_limit: 100,
		fuel_share: 0.1,
		memory_bytes: 1024,
		memory_limit_bytes: 4096,
		memory_share: 0.25,
		cold_start: false,
		output: [],
		output_truncated: false,
		...overrides
	};
}

describe('an invocation status', () => {
	it('fails with an error status, an error code or a 5xx answer', () => {
		expect(isFailure({ status: 'ok', error_code: null })).toBe(false);
		expect(isFailure({ status: 'error', error_code: null })).toBe(true);
		expect(isFailure({ status: 200, error_code: null })).toBe(false);
		expect(isFailure({ status: 404, error_code: null })).toBe(false);
		expect(isFailure({ status: '500', error_code: null })).toBe(true);
		expect(isFailure({ status: 'ok', error_code: 'fuel_exhausted' })).toBe(true);
	});
	it('reads as the status, with the error code when there is one', () => {
		expect(statusLabel({ status: 'ok', error_code: null })).toBe('ok');
		expect(statusLabel({ status: 'error', error_code: 'runtime_error' })).toBe('runtime_error');
		expect(statusLabel({ status: 500, error_code: 'runtime_error' })).toBe('500 runtime_error');
		expect(statusLabel({ status: 201, error_code: null })).toBe('201');
	});
});

describe('formatting', () => {
	it('durations, bytes and shares', () => {
		expect(formatDuration(0.4)).toBe('0.4 ms');
		expect(formatDuration(0.123)).toBe('0.12 ms');
		expect(formatDuration(12.4)).toBe('12 ms');
		expect(formatDuration(1250)).toBe('1.25 s');
		expect(formatDuration(null)).toBe('—');
		expect(formatBytes(512)).toBe('512 B');
		expect(formatBytes(1536)).toBe('1.5 KiB');
		expect(formatBytes(32 * 1024 * 1024)).toBe('32 MiB');
		expect(sharePercent(0.256)).toBe(26);
		expect(sharePercent(1.7)).toBe(100);
		expect(sharePercent(null)).toBeNull();
	});
});

describe('the Logs filters', () => {
	const now = Date.parse('2026-11-30T12:00:00Z');
	it('sends only the filters that are set, the range as a since time', () => {
		expect(listFilter({ script: '', status: '', range: 'all' }, now)).toEqual({
			script: undefined,
			status: undefined,
			since: undefined
		});
		expect(listFilter({ script: 'hello', status: 'error', range: '1h' }, now)).toEqual({
			script: 'hello',
			status: 'error',
			since: '2026-11-30T11:00:00.000Z'
		});
	});
	it('a live invocation joins the list only when it matches', () => {
		const failed = invocation(5, { status: 'error', error_code: 'runtime_error', script: 'orders' });
		expect(matchesFilter(failed, { status: 'error' })).toBe(true);
		expect(matchesFilter(failed, { status: 'ok' })).toBe(false);
		expect(matchesFilter(failed, { script: 'hello' })).toBe(false);
		expect(matchesFilter(failed, { since: new Date(6000).toISOString() })).toBe(false);
		expect(matchesFilter(invocation(7, { status: 404 }), { status: '404' })).toBe(true);
	});
	it('live invocations are merged newest first without duplicates', () => {
		const merged = mergeNewest([invocation(2), invocation(1)], [invocation(3), invocation(2)]);
		expect(merged.map((item) => item.id)).toEqual([3, 2, 1]);
	});
});

describe('the charts', () => {
	const stats: InvocationStats = {
		bucket_seconds: 60,
		series: [
			{
				script: 'hello',
				buckets: [
					{ start: '2026-11-30T12:00:00Z', count: 4, errors: 1, avg_ms: 10, p95_ms: 20 },
					{ start: '2026-11-30T12:01:00Z', count: 2, errors: 0, avg_ms: 4, p95_ms: 5 }
				]
			},
			{
				script: 'orders',
				buckets: [{ start: '2026-11-30T12:01:00Z', count: 1, errors: 1, avg_ms: 50, p95_ms: 50 }]
			}
		]
	};
	const first = Date.parse('2026-11-30T12:00:00Z') / 1000;
	it('bucket starts may be RFC 3339, seconds or milliseconds', () => {
		expect(bucketSeconds('2026-11-30T12:00:00Z')).toBe(first);
		expect(bucketSeconds(first)).toBe(first);
		expect(bucketSeconds(first * 1000)).toBe(first);
	});
	it('aligns the scripts on shared times; a missing bucket counts zero', () => {
		expect(chartData(stats, 'count')).toEqual({
			x: [first, first + 60],
			lines: [
				{ label: 'hello', script: 'hello', dashed: false, values: [4, 2] },
				{ label: 'orders', script: 'orders', dashed: false, values: [0, 1] }
			]
		});
		expect(chartData(stats, 'errors').lines.map((line) => line.values)).toEqual([
			[1, 0],
			[0, 1]
		]);
	});
	it('latency draws average and p95 per script, with gaps where nothing ran', () => {
		const latency = chartData(stats, 'latency');
		expect(latency.lines.map((line) => [line.label, line.dashed, line.values])).toEqual([
			['hello avg', false, [10, 4]],
			['hello p95', true, [20, 5]],
			['orders avg', false, [null, 50]],
			['orders p95', true, [null, 50]]
		]);
	});
	it('sums each script for the text summary', () => {
		expect(statsSummary(stats)).toEqual([
			{ script: 'hello', count: 6, errors: 1, avgMs: 8, worstP95Ms: 20 },
			{ script: 'orders', count: 1, errors: 1, avgMs: 50, worstP95Ms: 50 }
		]);
	});
});
