/** Formatting shared by the pages. */

/** A server time in the reader's locale, or a dash. */
export function formatTime(time: string | null | undefined): string {
	if (!time) return '—';
	const date = new Date(time);
	if (Number.isNaN(date.getTime())) return time;
	return date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

/** Parses "name: value" lines into header pairs; blank lines are skipped. */
export function parseHeaderLines(text: string): { headers: [string, string][]; errors: string[] } {
	const headers: [string, string][] = [];
	const errors: string[] = [];
	text.split('\n').forEach((line, index) => {
		if (line.trim() === '') return;
		const colon = line.indexOf(':');
		if (colon <= 0) {
			errors.push(`line ${index + 1}: write headers as "name: value"`);
			return;
		}
		headers.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()]);
	});
	return { headers, errors };
}
