// `npm run test:browser`: builds the dashboard when its build is missing or
// older than its sources, then runs the browser tests against the real binary.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { buildDir, dashboardDir, picloudBinary } from './harness.js';

function newestChange(directory) {
	let newest = 0;
	for (const entry of readdirSync(directory, { withFileTypes: true })) {
		const full = path.join(directory, entry.name);
		newest = Math.max(newest, entry.isDirectory() ? newestChange(full) : statSync(full).mtimeMs);
	}
	return newest;
}

const index = path.join(buildDir, 'index.html');
const sourcesChanged = Math.max(
	newestChange(path.join(dashboardDir, 'src')),
	...['svelte.config.js', 'vite.config.ts', 'package.json'].map((file) =>
		statSync(path.join(dashboardDir, file)).mtimeMs
	)
);
if (!existsSync(index) || statSync(index).mtimeMs < sourcesChanged) {
	console.log('building the dashboard…');
	const build = spawnSync('npm', ['run', 'build'], { cwd: dashboardDir, stdio: 'inherit' });
	if (build.status !== 0) process.exit(build.status ?? 1);
}

if (!existsSync(picloudBinary())) {
	console.error(`no picloud binary at ${picloudBinary()}: run \`cargo build -p picloud\` or set PICLOUD_BIN`);
	process.exit(1);
}

const tests = readdirSync(path.join(dashboardDir, 'tests/browser'))
	.filter((file) => file.endsWith('.test.js'))
	.map((file) => path.join('tests/browser', file));
const run = spawnSync(
	process.execPath,
	['--test', '--test-concurrency=1', '--test-reporter=spec', ...tests, ...process.argv.slice(2)],
	{ cwd: dashboardDir, stdio: 'inherit' }
);
process.exit(run.status ?? 1);
