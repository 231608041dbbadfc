/**
 * An app's limits as the Settings tab edits them: `settings.limits` of the
 * app, with the executor's names (`fuel`, `deadline_ms`, `memory_bytes`,
 * `output_bytes`). A missing key means the server's default; the server caps
 * every value at its instance-wide maximum.
 */
import type { AppLimits } from './api';

export type LimitKey = keyof AppLimits & string;

/** The limits the form offers, with the unit people type and its factor to the stored value. */
export const LIMIT_FIELDS: readonly { key: LimitKey; label: string; unit: string; scale: number }[] = [
	{ key: 'fuel', label: 'Fuel', unit: 'operations', scale: 1 },
	{ key: 'deadline_ms', label: 'Deadline', unit: 'ms', scale: 1 },
	{ key: 'memory_bytes', label: 'Memory', unit: 'MiB', scale: 1024 * 1024 },
	{ key: 'output_bytes', label: 'Output', unit: 'KiB', scale: 1024 }
];

/** The limits stored in an app's settings, ignoring anything that is not a positive number. */
export function limitsOf(settings: Record<string, unknown> | null | undefined): AppLimits {
	const stored = settings?.limits;
	if (typeof stored !== 'object' || stored === null) return {};
	const limits: AppLimits = {};
	for (const { key } of LIMIT_FIELDS) {
		const value = (stored as Record<string, unknown>)[key];
		if (typeof value === 'number' && value > 0) limits[key] = value;
	}
	return limits;
}

/** The limits typed in the form (in its units), or the first mistake in words. */
export function limitsFromForm(form: Record<LimitKey, string | number | null | undefined>):
	| { limits: AppLimits }
	| { error: string } {
	const limits: AppLimits = {};
	for (const field of LIMIT_FIELDS) {
		const raw = form[field.key];
		const text = raw === null || raw === undefined ? '' : String(raw).trim();
		if (text === '') continue;
		const number = Number(text);
		if (!Number.isFinite(number) || number <= 0) {
			return { error: `${field.label} must be a positive number of ${field.unit}, or empty for the default.` };
		}
		const value = Math.round(number * field.scale);
		if (!Number.isSafeInteger(value)) return { error: `${field.label} is too large.` };
		limits[field.key] = value;
	}
	return { limits };
}
