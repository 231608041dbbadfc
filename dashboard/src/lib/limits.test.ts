import { describe, expect, it } from 'vitest';
import { limitsFromForm, limitsOf } from './limits';

describe('app limits', () => {
	it('reads settings.limits, ignoring what is not a positive number', () => {
		expect(limitsOf({})).toEqual({});
		expect(limitsOf({ limits: { fuel: 1000, deadline_ms: 'x', memory_bytes: -1, other: 3 } })).toEqual({ fuel: 1000 });
	});
	it('turns the form into stored values: MiB and KiB to bytes, empty means default', () => {
		expect(limitsFromForm({ fuel: '5000000', deadline_ms: '', memory_bytes: '16', output_bytes: 8 })).toEqual({
			limits: { fuel: 5_000_000, memory_bytes: 16 * 1024 * 1024, output_bytes: 8 * 1024 }
		});
		expect(limitsFromForm({ fuel: '', deadline_ms: null, memory_bytes: undefined, output_bytes: '' })).toEqual({ limits: {} });
	});
	it('explains a bad value', () => {
		expect(limitsFromForm({ fuel: '-3', deadline_ms: '', memory_bytes: '', output_bytes: '' })).toEqual({
			error: 'Fuel must be a positive number of operations, or empty for the default.'
		});
	});
});
