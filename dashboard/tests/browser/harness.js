// Starts what the browser tests drive: the real picloud binary with a fresh
// data directory, the built dashboard on the same origin, and chromium.
import { spawn, spawnSync } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const dashboardDir = path.resolve(here, '../..');
export const buildDir = path.join(dashboardDir, 'build');
export const artifactsDir = path.join(dashboardDir, 'test-artifacts');
export const screenshotsDir = path.join(artifactsDir, 'screenshots');
export const OWNER_PASSWORD = 'owner-password-for-tests';

export function picloudBinary() {
	return process.env.PICLOUD_BIN ?? path.resolve(dashboardDir, '../target/debug/picloud');
}

function freePort() {
	return new Promise((resolve, reject) => {
		const server = net.createServer();
		server.listen(0, '127.0.0.1', () => {
			const { port } = server.address();
			server.close(() => resolve(port));
		});
		server.on('error', reject);
	});
}

async function waitUntilReady(url, child, output, timeoutMs = 120_000) {
	const started = Date.now();
	while (Date.now() - started < timeoutMs) {
		if (child.exitCode !== null) {
			throw new Error(`picloud exited with ${child.exitCode}:\n${output.join('')}`);
		}
		try {
			const response = await fetch(url + '/readyz');
			if (response.ok) return;
		} catch {
			// not listening yet
		}
		await new Promise((resolve) => setTimeout(resolve, 200));
	}
	throw new Error(`picloud was not ready within ${timeoutMs} ms:\n${output.join('')}`);
}

/** Starts picloud on a free port with a fresh data directory. */
export async function startPicloud() {
	const binary = picloudBinary();
	if (!existsSync(binary)) {
		throw new Error(`no picloud binary at ${binary}: run \`cargo build -p picloud\` or set PICLOUD_BIN`);
	}
	const dataDir = mkdtempSync(path.join(os.tmpdir(), 'picloud-dashboard-test-'));
	// The compiled sandbox is cached across runs: compiling it takes seconds.
	const cacheDir = path.join(artifactsDir, 'guest-cache');
	mkdirSync(cacheDir, { recursive: true });
	const port = await freePort();
	const url = `http://127.0.0.1:${port}`;
	const output = [];
	const args = ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, '--cache-dir', cacheDir];
	// Once the binary serves the dashboard itself, point it at this build.
	const help = spawnSync(binary, ['serve', '--help'], { encoding: 'utf8' });
	if ((help.stdout ?? '').includes('--dashboard-dir')) args.push('--dashboard-dir', buildDir);
	const child = spawn(
		binary,
		args,
		{
			env: {
				...process.env,
				PICLOUD_OWNER_PASSWORD: OWNER_PASSWORD,
				NO_COLOR: '1'
			},
			stdio: ['ignore', 'pipe', 'pipe']
		}
	);
	child.stdout.on('data', (chunk) => output.push(String(chunk)));
	child.stderr.on('data', (chunk) => output.push(String(chunk)));
	await waitUntilReady(url, child, output);
	return {
		url,
		output,
		async stop() {
			if (child.exitCode === null) {
				child.kill('SIGTERM');
				await new Promise((resolve) => child.once('exit', resolve));
			}
			rmSync(dataDir, { recursive: true, force: true });
		}
	};
}

const CONTENT_TYPES = {
	'.html': 'text/html; charset=utf-8',
	'.js': 'text/javascript; charset=utf-8',
	'.css': 'text/css; charset=utf-8',
	'.json': 'application/json',
	'.svg': 'image/svg+xml',
	'.png': 'image/png',
	'.txt': 'text/plain; charset=utf-8'
};

/**
 * Serves `build/` at /dashboard/ (unknown paths get index.html, as the SPA
 * fallback) and proxies everything else to picloud, so the page, the API and
 * the script endpoints share one origin as they will when picloud serves the
 * dashboard itself.
 */
export async function startDashboardProxy(picloudUrl) {
	const upstream = new URL(picloudUrl);
	const server = http.createServer((request, response) => {
		const url = new URL(request.url ?? '/', 'http://localhost');
		if (url.pathname === '/dashboard' || url.pathname.startsWith('/dashboard/')) {
			const relative = decodeURIComponent(url.pathname.slice('/dashboard'.length)).replace(/^\/+/, '');
			let file = path.join(buildDir, relative);
			if (!file.startsWith(buildDir) || !existsSync(file) || statSync(file).isDirectory()) {
				file = path.join(buildDir, 'index.html');
			}
			response.writeHead(200, {
				'content-type': CONTENT_TYPES[path.extname(file)] ?? 'application/octet-stream'
			});
			createReadStream(file).pipe(response);
			return;
		}
		const forwarded = http.request(
			{
				host: upstream.hostname,
				port: upstream.port,
				method: request.method,
				path: request.url,
				headers: request.headers
			},
			(answer) => {
				response.writeHead(answer.statusCode ?? 502, answer.headers);
				answer.pipe(response);
			}
		);
		forwarded.on('error', (error) => {
			response.writeHead(502, { 'content-type': 'text/plain' });
			response.end(`proxy error: ${error.message}`);
		});
		request.pipe(forwarded);
	});
	const port = await freePort();
	await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
	return {
		url: `http://127.0.0.1:${port}`,
		stop: () => new Promise((resolve) => server.close(resolve))
	};
}

/** The origin to open: picloud itself when it serves the dashboard, else the proxy. */
export async function startStack() {
	const picloud = await startPicloud();
	const served = await fetch(picloud.url + '/dashboard/')
		.then((response) => response.ok && (response.headers.get('content-type') ?? '').includes('html'))
		.catch(() => false);
	const proxy = served ? null : await startDashboardProxy(picloud.url);
	return {
		picloud,
		origin: proxy ? proxy.url : picloud.url,
		servedByPicloud: served,
		async stop() {
			await proxy?.stop();
			await picloud.stop();
		}
	};
}

export const CHROMIUM_ARGS = [
	'--headless',
	'--no-sandbox',
	'--disable-gpu',
	'--disable-quic',
	'--no-first-run',
	'--disable-background-networking',
	'--disable-component-update',
	'--disable-sync'
];

export function launchBrowser() {
	return chromium.launch({
		executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
		args: CHROMIUM_ARGS
	});
}

/**
 * Records console errors and uncaught exceptions of a page. The browser
 * itself logs "Failed to load resource" for every 4xx answer the dashboard
 * expects (401 before log-in, 422 for a compile error); those are network
 * notices, not errors of the page, and are kept apart.
 */
export function watchConsole(page) {
	const errors = [];
	const expectedNetworkNotices = [];
	page.on('console', (message) => {
		if (message.type() !== 'error') return;
		const text = message.text();
		if (/^Failed to load resource: the server responded with a status of 4\d\d/.test(text)) {
			expectedNetworkNotices.push(text);
		} else {
			errors.push(text);
		}
	});
	page.on('pageerror', (error) => errors.push(`uncaught: ${error.message}`));
	return { errors, expectedNetworkNotices };
}

export async function screenshot(page, name) {
	mkdirSync(screenshotsDir, { recursive: true });
	await page.screenshot({ path: path.join(screenshotsDir, `${name}.png`), fullPage: true });
}
