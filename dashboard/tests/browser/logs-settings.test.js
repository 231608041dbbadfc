// Logs, charts and the editable settings, driven like people would: deploy a
// script, call it, read what happened in Logs; set variables, a secret, the
// allow-list, limits, schedules and files. Against the real picloud binary
// with a fresh database.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launchBrowser, OWNER_PASSWORD, screenshot, startStack, watchConsole } from './harness.js';

let stack;
let browser;
let page;
let consoleWatch;

before(async () => {
	stack = await startStack();
	browser = await launchBrowser();
	const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
	page = await context.newPage();
	page.setDefaultTimeout(15_000);
	consoleWatch = watchConsole(page);
});

after(async () => {
	await browser?.close();
	await stack?.stop();
});

const dashboard = (path = '/') => `${stack.origin}/dashboard${path}`;
const SECRET_VALUE = 'sk-live-5f2d0c1e-never-shown';
const passwordOf = (username) => (username === 'owner' ? OWNER_PASSWORD : `password-of-${username}`);

async function logInAs(username) {
	if (await page.getByRole('button', { name: 'Log out' }).isVisible()) {
		await page.getByRole('button', { name: 'Log out' }).click();
		await page.waitForURL(/\/dashboard\/login/);
	}
	await page.goto(dashboard('/login'));
	await page.getByLabel('Username or e-mail').fill(username);
	await page.getByLabel('Password').fill(passwordOf(username));
	await page.getByRole('button', { name: 'Log in' }).click();
	await page.getByRole('heading', { name: 'Apps', level: 1 }).waitFor();
}

async function openApp(slug, tab) {
	await page.goto(dashboard(`/apps/${slug}${tab ? `?tab=${tab}` : ''}`));
	await page.getByRole('tablist').waitFor();
}

/** Calls the script's endpoint as visitors would (from outside the page, so a 5xx is no console noise). */
async function call(paths) {
	const statuses = [];
	for (const path of paths) {
		const response = await fetch(stack.origin + path);
		await response.arrayBuffer();
		statuses.push(response.status);
	}
	return statuses;
}

/** Waits until the Logs tab lists at least `count` invocations, refreshing as a person would. */
async function expectRows(count) {
	for (let attempt = 0; attempt < 40; attempt += 1) {
		if ((await page.getByTestId('invocation-row').count()) >= count) return;
		await page.waitForTimeout(250);
		await page.getByRole('button', { name: 'Refresh' }).click();
	}
	assert.fail(`the Logs tab never listed ${count} invocations`);
}

/** Starts a new script in the Scripts tab and deploys `source` as its first version. */
async function deployNew(name, source) {
	await page.getByLabel('New script').fill(name);
	await page.getByRole('button', { name: 'Start editing' }).click();
	await page.locator('.cm-content').click();
	await page.keyboard.press('Control+A');
	await page.keyboard.press('Delete');
	await page.keyboard.insertText(source);
	await page.getByRole('button', { name: 'Create and deploy' }).click();
	await page.getByRole('status').filter({ hasText: `Deployed version 1 of ${name}` }).waitFor();
}

test('as owner, create an app and deploy a script that prints and sometimes fails', async () => {
	await logInAs('owner');
	await page.getByLabel('Slug (in URLs)').fill('obs');
	await page.getByRole('button', { name: 'Create app' }).click();
	await page.getByRole('heading', { name: 'obs', level: 1 }).waitFor();
	await deployNew(
		'hello',
		'print(`handling ${request.subpath}`);\nif request.subpath == "/fail" { throw "boom: the order was not found"; }\n`ok ${request.subpath}`'
	);
	// One call from the try-it panel, the others as visitors would.
	await page.getByRole('button', { name: 'Send request' }).click();
	await page.getByTestId('try-status').filter({ hasText: '200' }).waitFor();
	const statuses = await call(['/obs/hello/1', '/obs/hello/2', '/obs/hello/fail']);
	assert.deepEqual(statuses.slice(0, 2), [200, 200]);
	assert.ok(statuses[2] >= 500, `the failing call answered ${statuses[2]}`);
});

test("from the try-it answer, open that very call in Logs by its request id", async () => {
	await page.getByRole('link', { name: 'see this call in Logs' }).click();
	await page.waitForURL(/tab=logs&request=/);
	await page.getByText(/^Showing request /).waitFor();
	await page.getByTestId('invocation-output').filter({ hasText: 'handling' }).waitFor();
	assert.equal(await page.getByTestId('invocation-row').count(), 1);
	await page.getByRole('button', { name: 'Show all' }).click();
});

test('open Logs: rows with status and duration, the error stands out, and its row opens on the output', async () => {
	await page.getByRole('tab', { name: 'Logs' }).click();
	await expectRows(4);
	const failed = page.locator('[data-testid="invocation-row"][data-status="error"]');
	assert.equal(await failed.count(), 1);
	// Not by colour alone: an icon and words.
	assert.match(await failed.innerText(), /✕/);
	assert.equal(await page.locator('[data-testid="invocation-row"][data-status="ok"]').count(), 3);
	assert.match(await page.getByTestId('invocation-row').first().innerText(), /hello/);
	await failed.getByRole('button', { name: /^Show details of hello/ }).click();
	await page.getByRole('note').filter({ hasText: 'boom: the order was not found' }).waitFor();
	assert.match(await page.locator('tr.details.failed').getByTestId('invocation-output').innerText(), /handling \/fail/);
	await page.locator('tr.details.failed').getByRole('meter', { name: /Fuel used/ }).waitFor();
	await failed.getByRole('button', { name: /^Hide details of hello/ }).waitFor();
});

test('the charts draw invocations, errors and latency for the script', async () => {
	const charts = page.getByTestId('chart');
	assert.equal(await charts.count(), 3);
	await charts.first().locator('canvas').waitFor();
	await page.getByRole('button', { name: 'Refresh' }).click();
	const totals = page.getByRole('table', { name: 'Totals per script' });
	const row = totals.getByRole('row', { name: /hello/ });
	await row.getByRole('cell', { name: '4', exact: true }).waitFor();
	const cells = await row.getByRole('cell').allInnerTexts();
	assert.equal(cells[1], '4');
	assert.equal(cells[2], '1');
	for (const choice of ['24h', '7d', '1h']) {
		await page.getByRole('radio', { name: new RegExp(`^${choice}`) }).check();
		await charts.first().locator('canvas').waitFor();
	}
	await screenshot(page, '20-logs-charts');
});

test('filter to failures only, then see a new call arrive live', async () => {
	await page.getByLabel('Status').selectOption('error');
	await page.locator('[data-testid="invocation-row"][data-status="ok"]').first().waitFor({ state: 'detached' });
	assert.equal(await page.getByTestId('invocation-row').count(), 1);
	await page.getByLabel('Status').selectOption('');
	await expectRows(4);
	await page.getByRole('switch', { name: 'Live' }).check();
	await page.getByRole('status').filter({ hasText: 'Following new invocations' }).waitFor();
	await call(['/obs/hello/live']);
	await page.getByRole('status').filter({ hasText: '(1 new)' }).waitFor();
	assert.equal(await page.getByTestId('invocation-row').count(), 5);
	await page.getByRole('switch', { name: 'Live' }).uncheck();
});

test('older invocations come with "Load more"', async () => {
	await call(Array.from({ length: 50 }, (_, index) => `/obs/hello/many-${index}`));
	// Records are written in the background, in batches: refresh until the page is full.
	for (let attempt = 0; attempt < 40; attempt += 1) {
		await page.getByRole('button', { name: 'Refresh' }).click();
		if (await page.getByRole('button', { name: 'Load more' }).isVisible()) break;
		await page.waitForTimeout(250);
	}
	await page.getByRole('button', { name: 'Load more' }).waitFor();
	assert.equal(await page.getByTestId('invocation-row').count(), 50);
	await page.getByRole('button', { name: 'Load more' }).click();
	await page.waitForFunction(() => document.querySelectorAll('[data-testid="invocation-row"]').length === 55);
});

test('at phone width the Logs tab does not scroll sideways', async () => {
	await page.setViewportSize({ width: 390, height: 844 });
	await page.getByRole('button', { name: 'Refresh' }).click();
	await page.getByTestId('chart').first().locator('canvas').waitFor();
	const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
	assert.ok(overflow <= 0, `the page is ${overflow}px wider than the screen`);
	await screenshot(page, '21-phone-logs');
	await page.setViewportSize({ width: 1280, height: 900 });
});

test('set a variable in Settings', async () => {
	await page.getByRole('tab', { name: 'Settings' }).click();
	await page.getByText('No variables yet.').waitFor();
	await page.getByLabel('Variable name').fill('GREETING');
	await page.getByLabel('Variable value').fill('Hello there');
	await page.getByRole('button', { name: 'Save variable' }).click();
	await page.getByRole('status').filter({ hasText: 'Variable GREETING saved.' }).waitFor();
	await page.getByTestId('variable-GREETING').getByText('Hello there').waitFor();
});

test('set a secret: its value is never shown again, not even after a reload', async () => {
	await page.getByLabel('Secret name').fill('API_KEY');
	await page.getByLabel('Secret value').fill(SECRET_VALUE);
	assert.equal(await page.getByLabel('Secret value').getAttribute('type'), 'password');
	await page.getByRole('button', { name: 'Save secret' }).click();
	await page.getByRole('status').filter({ hasText: 'Secret API_KEY saved. Its value is not shown again.' }).waitFor();
	await page.getByTestId('secret-API_KEY').waitFor();
	assert.equal(await page.getByLabel('Secret value').inputValue(), '');
	const html = await page.content();
	assert.ok(!html.includes(SECRET_VALUE), 'the secret value is on the page');
	await page.reload();
	await page.getByTestId('secret-API_KEY').waitFor();
	assert.ok(!(await page.content()).includes(SECRET_VALUE), 'the secret value is on the page after a reload');
	// Replacing asks for a new value; the old one is not filled in.
	await page.getByRole('button', { name: 'Replace API_KEY' }).click();
	assert.equal(await page.getByLabel('Secret name').inputValue(), 'API_KEY');
	assert.equal(await page.getByLabel('Secret value').inputValue(), '');
});

test('allow outbound HTTP to two hosts', async () => {
	await page.getByLabel('Allowed hosts (one per line)').fill('api.example.com\nhooks.example.org\n');
	await page.getByRole('button', { name: 'Save allow-list' }).click();
	await page.getByRole('status').filter({ hasText: 'scripts may call 2 hosts' }).waitFor();
	await page.reload();
	await page.getByLabel('Allowed hosts (one per line)').waitFor();
	assert.equal(await page.getByLabel('Allowed hosts (one per line)').inputValue(), 'api.example.com\nhooks.example.org');
});

test('as app admin, change the limits; they are kept', async () => {
	await page.getByLabel('Fuel (operations)').fill('50000000');
	await page.getByLabel('Memory (MiB)').fill('16');
	await page.getByRole('button', { name: 'Save limits' }).click();
	await page.getByRole('status').filter({ hasText: 'Limits saved.' }).waitFor();
	await page.reload();
	await page.getByLabel('Fuel (operations)').waitFor();
	assert.equal(await page.getByLabel('Fuel (operations)').inputValue(), '50000000');
	assert.equal(await page.getByLabel('Memory (MiB)').inputValue(), '16');
	assert.equal(await page.getByLabel('Deadline (ms)').inputValue(), '');
	await screenshot(page, '22-settings-edit');
});

test('upload a static file and delete it', async () => {
	await page.getByLabel('File', { exact: true }).setInputFiles({
		name: 'robots.txt',
		mimeType: 'text/plain',
		buffer: Buffer.from('User-agent: *\nDisallow:\n')
	});
	assert.equal(await page.getByLabel('Path', { exact: true }).inputValue(), 'robots.txt');
	await page.getByRole('button', { name: 'Upload' }).click();
	await page.getByRole('status').filter({ hasText: 'Uploaded robots.txt' }).waitFor();
	await page.getByRole('cell', { name: 'robots.txt', exact: true }).waitFor();
	await page.getByRole('button', { name: 'Delete robots.txt' }).click();
	const dialog = page.getByRole('dialog', { name: 'Delete file' });
	await dialog.getByRole('button', { name: 'Delete file' }).click();
	await dialog.waitFor({ state: 'hidden' });
	await page.getByText('No files yet.').waitFor();
});

test("what a script keeps in the key-value store shows in Settings, and an editor's delete removes it", async () => {
	await page.getByRole('tab', { name: 'Scripts' }).click();
	await deployNew('remember', 'kv::set(`visits${request.subpath}`, #{ path: request.subpath });\n"kept"');
	assert.deepEqual(await call(['/obs/remember/home', '/obs/remember/cart']), [200, 200]);
	await page.getByRole('tab', { name: 'Settings' }).click();
	await page.getByRole('heading', { name: 'Key-value data' }).waitFor();
	const keys = page.getByRole('table', { name: 'Keys' });
	await keys.getByRole('cell', { name: 'visits/home', exact: true }).waitFor();
	assert.match(await keys.getByRole('row', { name: /visits\/cart/ }).innerText(), /"path":"\/cart"/);
	await page.getByTestId('kv-usage').filter({ hasText: '2 keys' }).waitFor();
	await page.getByLabel('Key prefix').fill('visits/c');
	await page.getByRole('button', { name: 'Show keys' }).click();
	await keys.getByRole('cell', { name: 'visits/home', exact: true }).waitFor({ state: 'detached' });
	await page.getByRole('button', { name: 'Delete key visits/cart' }).click();
	const dialog = page.getByRole('dialog', { name: 'Delete key' });
	await dialog.getByRole('button', { name: 'Delete key' }).click();
	await dialog.waitFor({ state: 'hidden' });
	await page.getByRole('status').filter({ hasText: 'Key visits/cart deleted.' }).waitFor();
	await page.getByText('No keys starting with “visits/c”.').waitFor();
});

test('add a schedule for the script in the Scripts tab, and pause it', async () => {
	await page.getByRole('tab', { name: 'Scripts' }).click();
	await page.getByRole('heading', { name: 'Schedules' }).waitFor();
	await page.getByLabel('Script to run').selectOption('hello');
	await page.getByLabel('Cron expression').fill('*/5 * * * *');
	await page.getByRole('button', { name: 'Add schedule' }).click();
	await page.getByRole('status').filter({ hasText: 'Schedule added: hello runs at “*/5 * * * *”' }).waitFor();
	const row = page.getByRole('table', { name: 'Schedules' }).getByRole('row', { name: /hello/ });
	await row.getByText('active').waitFor();
	await row.getByRole('button', { name: 'Pause hello at */5 * * * *' }).click();
	await page.getByRole('status').filter({ hasText: 'is paused' }).waitFor();
	await row.getByText('paused').waitFor();
	await screenshot(page, '23-schedules');
});

test('at phone width, Settings and the schedules do not scroll sideways', async () => {
	await page.setViewportSize({ width: 390, height: 844 });
	for (const tab of ['Scripts', 'Settings']) {
		await page.getByRole('tab', { name: tab }).click();
		await page.getByRole('heading', { name: tab === 'Scripts' ? 'Schedules' : 'Static files' }).waitFor();
		const overflow = await page.evaluate(
			() => document.documentElement.scrollWidth - document.documentElement.clientWidth
		);
		assert.ok(overflow <= 0, `${tab} is ${overflow}px wider than the screen`);
	}
	await screenshot(page, '25-phone-settings');
	await page.setViewportSize({ width: 1280, height: 900 });
});

test('an editor manages variables but only reads the limits; a viewer only reads', async () => {
	// The owner makes two members through Admin → Users and grants their roles.
	await page.getByRole('link', { name: 'Users' }).click();
	for (const username of ['edna', 'vic']) {
		await page.getByLabel('Username').fill(username);
		await page.getByLabel('E-mail').fill(`${username}@example.com`);
		await page.getByLabel('Password (12 characters or more)').fill(passwordOf(username));
		await page.getByRole('button', { name: 'Create user' }).click();
		await page.getByRole('status').filter({ hasText: `Created ${username}` }).waitFor();
	}
	await openApp('obs', 'members');
	for (const [username, role] of [
		['edna', 'editor'],
		['vic', 'viewer']
	]) {
		const label = `${username} (${username}@example.com)`;
		const userSelect = page.locator('select[name="member-user"]');
		await userSelect.locator('option', { hasText: label }).waitFor({ state: 'attached' });
		await userSelect.selectOption({ label });
		await page.getByLabel('Role').selectOption(role);
		await page.getByRole('button', { name: 'Add member' }).click();
		await page.getByRole('status').filter({ hasText: `${username} is now ${role} of obs.` }).waitFor();
	}

	await logInAs('edna');
	await openApp('obs', 'settings');
	await page.getByRole('heading', { name: 'Limits' }).waitFor();
	assert.equal(await page.getByRole('button', { name: 'Save limits' }).count(), 0);
	await page.getByText('App admins can change the limits.').waitFor();
	await page.getByTestId('limits').getByText('16 MiB').waitFor();
	await page.getByLabel('Variable name').fill('MODE');
	await page.getByLabel('Variable value').fill('strict');
	await page.getByRole('button', { name: 'Save variable' }).click();
	await page.getByRole('status').filter({ hasText: 'Variable MODE saved.' }).waitFor();
	assert.equal(await page.getByRole('button', { name: 'Delete app…' }).count(), 0);

	await logInAs('vic');
	await openApp('obs', 'settings');
	await page.getByTestId('variable-MODE').waitFor();
	await page.getByTestId('secret-API_KEY').waitFor();
	for (const button of ['Save variable', 'Save secret', 'Save allow-list', 'Save limits', 'Upload', 'Save name']) {
		assert.equal(await page.getByRole('button', { name: button }).count(), 0, `a viewer is offered ${button}`);
	}
	assert.equal(await page.getByRole('button', { name: /^(Edit|Remove|Replace|Delete) / }).count(), 0);
	await page.getByRole('listitem').filter({ hasText: 'api.example.com' }).waitFor();
	assert.ok(!(await page.content()).includes(SECRET_VALUE));
	await screenshot(page, '24-viewer-config');
	await openApp('obs', 'logs');
	await expectRows(5);
	await openApp('obs', 'scripts');
	await page.getByText('Editors and app admins can add schedules.').waitFor();
	assert.equal(await page.getByRole('button', { name: /^(Pause|Resume|Delete the schedule)/ }).count(), 0);
});

test('no console errors on any page', () => {
	assert.deepEqual(consoleWatch.errors, []);
});
