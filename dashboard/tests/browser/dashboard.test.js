// The dashboard, driven like a person would: against the real picloud binary
// with a fresh database. Run with `npm run test:browser`.
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

/** Replaces the editor's text, as pasting over a selection would. */
async function typeInEditor(text) {
	await page.locator('.cm-content').click();
	await page.keyboard.press('Control+A');
	await page.keyboard.press('Delete');
	await page.keyboard.insertText(text);
}

/** Waits until the Logs tab lists at least `count` invocations, refreshing as a person would. */
async function expectRows(count) {
	for (let attempt = 0; attempt < 20; attempt += 1) {
		if ((await page.getByTestId('invocation-row').count()) >= count) return;
		await page.waitForTimeout(250);
		await page.getByRole('button', { name: 'Refresh' }).click();
	}
	assert.fail(`the Logs tab never listed ${count} invocations`);
}

async function tryIt({ method = 'GET', path = '', body = '' } = {}) {
	await page.getByLabel('Method').selectOption(method);
	await page.getByRole('textbox', { name: /^Path after/ }).fill(path);
	if (body) await page.getByLabel('Body').fill(body);
	await page.getByRole('button', { name: 'Send request' }).click();
}

test('a visitor is sent to the log-in page, which explains the first start', async () => {
	await page.goto(dashboard('/'));
	await page.waitForURL(/\/dashboard\/login/);
	await page.getByRole('heading', { name: 'First time here?' }).waitFor();
	assert.match(await page.locator('aside.hint').innerText(), /PICLOUD_OWNER_PASSWORD/);
	await screenshot(page, '01-login');
});

test('a wrong password is refused in words, next to the form', async () => {
	await page.getByLabel('Username or e-mail').fill('owner');
	await page.getByLabel('Password').fill('not the password');
	await page.getByRole('button', { name: 'Log in' }).click();
	await page.getByRole('alert').filter({ hasText: 'unknown user or wrong password' }).waitFor();
	assert.match(page.url(), /\/dashboard\/login/);
});

test('log in as the owner and see the (empty) apps page', async () => {
	await page.getByLabel('Password').fill(OWNER_PASSWORD);
	await page.getByRole('button', { name: 'Log in' }).click();
	await page.getByRole('heading', { name: 'Apps', level: 1 }).waitFor();
	assert.equal(await page.getByTestId('current-user').innerText(), 'owner');
	await page.getByText('No apps yet.').waitFor();
});

test('an invalid slug is refused by the server, and the reason shown', async () => {
	await page.getByLabel('Slug (in URLs)').fill('shop');
	// Bypass the browser's own pattern check to see the server's answer.
	await page.getByLabel('Slug (in URLs)').evaluate((input) => input.removeAttribute('pattern'));
	await page.getByLabel('Slug (in URLs)').fill('Bad Slug');
	await page.getByRole('button', { name: 'Create app' }).click();
	await page.getByRole('alert').filter({ hasText: 'invalid slug' }).waitFor();
});

test('create an app; it opens on the Scripts tab, and the owner sees all five tabs', async () => {
	await page.getByLabel('Slug (in URLs)').fill('shop');
	await page.getByLabel('Name (optional)').fill('The Shop');
	await page.getByRole('button', { name: 'Create app' }).click();
	await page.getByRole('heading', { name: 'The Shop', level: 1 }).waitFor();
	const tabs = await page.getByRole('tab').allInnerTexts();
	assert.deepEqual(tabs, ['Scripts', 'Logs', 'Domains', 'Members', 'Settings']);
	assert.equal(await page.getByRole('tab', { name: 'Scripts' }).getAttribute('aria-selected'), 'true');
});

test('deploy a script with a compile error: it is shown at its line, and nothing is deployed', async () => {
	await page.getByLabel('New script').fill('hello');
	await page.getByRole('button', { name: 'Start editing' }).click();
	await page.getByText('New script: it is created when its first version deploys.').waitFor();
	await typeInEditor('let greeting = "Hello";\nlet x = ;\ngreeting');
	await page.getByRole('button', { name: 'Create and deploy' }).click();
	const error = page.getByTestId('deploy-error');
	await error.waitFor();
	assert.match(await error.innerText(), /does not compile\. Line 2, column 9: Unexpected ';'/);
	// The editor marks the line: a lint marker in the gutter and an underline.
	await page.locator('.cm-lint-marker-error').waitFor();
	await page.locator('.cm-lintRange-error').waitFor();
	assert.equal(await page.getByRole('status').filter({ hasText: 'Deployed' }).count(), 0);
	assert.equal(await page.getByText('No scripts yet.').count(), 1);
	await screenshot(page, '03-compile-error');
});

test('fix the compile error and deploy: version 1 is active', async () => {
	await typeInEditor('let greeting = "Hello";\n`${greeting} from ${request.method} ${request.subpath}`');
	await page.locator('.cm-lint-marker-error').waitFor({ state: 'detached' });
	await page.getByRole('button', { name: 'Create and deploy' }).click();
	await page.getByRole('status').filter({ hasText: 'Deployed version 1 of hello; it is now active.' }).waitFor();
	await page.getByRole('button', { name: /hello\s+v1 active/ }).waitFor();
});

test('call it from the try-it panel', async () => {
	await tryIt({ method: 'POST', path: '/42', body: 'ignored' });
	await page.getByTestId('try-status').filter({ hasText: '200' }).waitFor();
	assert.equal(await page.getByTestId('try-body').innerText(), 'Hello from POST /42');
});

test('deploy a second version and see its changes in the history', async () => {
	await typeInEditor('`Version two says ${request.method}`');
	await page.getByRole('button', { name: 'Deploy', exact: true }).click();
	await page.getByRole('status').filter({ hasText: 'Deployed version 2 of hello' }).waitFor();
	await page.getByRole('button', { name: 'Show changes in version 2' }).click();
	const diff = page.getByRole('figure');
	await diff.waitFor();
	const text = await diff.evaluate((figure) => figure.textContent ?? '');
	assert.match(text, /removed: let greeting = "Hello";/);
	assert.match(text, /added: `Version two says \$\{request.method\}`/);
	await tryIt({ method: 'GET' });
	await page.getByTestId('try-body').filter({ hasText: 'Version two says GET' }).waitFor();
	await screenshot(page, '02-scripts');
});

test('roll back to version 1: the endpoint answers with it again', async () => {
	await page.getByRole('button', { name: 'Roll back to version 1' }).click();
	await page.getByRole('status').filter({ hasText: 'Version 1 of hello is active again.' }).waitFor();
	await page.getByRole('button', { name: 'Roll back to version 2' }).waitFor();
	await tryIt({ method: 'GET', path: '' });
	await page.getByTestId('try-body').filter({ hasText: 'Hello from GET' }).waitFor();
});

test('the Logs tab lists the calls just made, with charts above them', async () => {
	await page.getByRole('tab', { name: 'Logs' }).click();
	await page.getByRole('heading', { name: 'Overview' }).waitFor();
	await page.getByRole('heading', { name: 'Invocations' }).waitFor();
	// Records are written in the background: a moment may pass before they show.
	await expectRows(1);
	await screenshot(page, '04-logs');
});

test('add a domain, see a bad one refused, and remove it through the confirmation', async () => {
	await page.getByRole('tab', { name: 'Domains' }).click();
	await page.getByText('No domains yet.').waitFor();
	await page.getByLabel('Host name').fill('not a host');
	await page.getByRole('button', { name: 'Add domain' }).click();
	await page.locator('#domain-error [role="alert"]').waitFor();
	await page.getByLabel('Host name').fill('shop.example.com');
	await page.getByRole('button', { name: 'Add domain' }).click();
	await page.getByRole('status').filter({ hasText: 'shop.example.com now routes to shop.' }).waitFor();
	await page.getByRole('cell', { name: 'shop.example.com', exact: true }).waitFor();
	await screenshot(page, '05-domains');
	await page.getByRole('button', { name: 'Remove shop.example.com' }).click();
	const dialog = page.getByRole('dialog', { name: 'Remove domain' });
	await dialog.waitFor();
	await dialog.getByRole('button', { name: 'Remove domain' }).click();
	await dialog.waitFor({ state: 'hidden' });
	await page.getByText('No domains yet.').waitFor();
});

test('the owner sees the Members tab, with no explicit members yet', async () => {
	await page.getByRole('tab', { name: 'Members' }).click();
	await page.getByText('No members yet.').waitFor();
	await screenshot(page, '06-members');
});

test('rename the app in Settings', async () => {
	await page.getByRole('tab', { name: 'Settings' }).click();
	await page.getByLabel('Name', { exact: true }).fill('Shop renamed');
	await page.getByRole('button', { name: 'Save name' }).click();
	await page.getByRole('status').filter({ hasText: 'Saved.' }).waitFor();
	await page.getByRole('heading', { name: 'Shop renamed', level: 1 }).waitFor();
	await screenshot(page, '07-settings');
});

test('tabs are reachable with the keyboard', async () => {
	await page.getByRole('tab', { name: 'Settings' }).focus();
	await page.keyboard.press('Home');
	await page.waitForURL(/tab=scripts/);
	await page.keyboard.press('ArrowRight');
	await page.waitForURL(/tab=logs/);
	assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Logs');
});

test('at phone width the app page does not scroll sideways', async () => {
	await page.setViewportSize({ width: 390, height: 844 });
	await page.getByRole('tab', { name: 'Scripts' }).click();
	await page.getByRole('button', { name: /hello\s+v1 active/ }).click();
	await page.locator('.cm-content').waitFor();
	const overflow = await page.evaluate(
		() => document.documentElement.scrollWidth - document.documentElement.clientWidth
	);
	assert.ok(overflow <= 0, `the page is ${overflow}px wider than the screen`);
	await screenshot(page, '08-phone-scripts');
	await page.setViewportSize({ width: 1280, height: 900 });
});

test('delete a script through its action menu and the confirmation', async () => {
	await page.getByRole('button', { name: 'Actions for hello' }).click();
	await page.getByRole('menuitem', { name: 'Delete script…' }).click();
	const dialog = page.getByRole('dialog', { name: 'Delete script hello?' });
	await dialog.getByRole('button', { name: 'Delete script' }).click();
	await dialog.waitFor({ state: 'hidden' });
	await page.getByRole('status').filter({ hasText: 'hello was deleted.' }).waitFor();
	await page.getByText('No scripts yet.').waitFor();
});

test('delete the app through the confirmation; it is gone from the list', async () => {
	await page.getByRole('tab', { name: 'Settings' }).click();
	await page.getByRole('button', { name: 'Delete app…' }).click();
	const dialog = page.getByRole('dialog', { name: 'Delete shop?' });
	await dialog.getByRole('button', { name: 'Delete app' }).click();
	await page.getByRole('heading', { name: 'Apps', level: 1 }).waitFor();
	await page.getByText('No apps yet.').waitFor();
});

test('create an API token: its secret is shown once', async () => {
	await page.getByRole('link', { name: 'API tokens' }).click();
	await page.getByRole('heading', { name: 'API tokens', level: 1 }).waitFor();
	await page.getByLabel('Name', { exact: true }).fill('laptop');
	await page.getByRole('button', { name: 'Create token' }).click();
	assert.match(await page.getByTestId('token-secret').innerText(), /^pc_/);
	await page.getByRole('cell', { name: 'laptop', exact: true }).waitFor();
	await screenshot(page, '09-tokens');
});

test('when the session ends mid-page, the next action leads to the log-in page and back', async () => {
	await page.context().clearCookies();
	await page.getByRole('link', { name: 'Apps' }).click();
	await page.waitForURL(/\/dashboard\/login\?next=%2Fdashboard%2F$/);
	await page.getByLabel('Username or e-mail').fill('owner');
	await page.getByLabel('Password').fill(OWNER_PASSWORD);
	await page.getByRole('button', { name: 'Log in' }).click();
	await page.getByRole('heading', { name: 'Apps', level: 1 }).waitFor();
});

test('log out: back at the log-in page, and the apps need a log-in again', async () => {
	await page.getByRole('button', { name: 'Log out' }).click();
	await page.waitForURL(/\/dashboard\/login$/);
	await page.goto(dashboard('/apps/shop'));
	await page.waitForURL(/\/dashboard\/login\?next=/);
});

test('no console errors on any page', () => {
	assert.deepEqual(consoleWatch.errors, []);
});
